"""The PostgreSQL stand-in: cluster story, server lifecycle, replication control, settings, queries."""
