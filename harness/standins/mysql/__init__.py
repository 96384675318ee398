"""The MySQL-protocol stand-in (MariaDB): cluster story, server lifecycle, replication, options, GTIDs."""
