"""Other poolers run beside the reference proxy: benchmark peers, and external targets whose documented
behaviour the certification must report (PgBouncer in each pool mode, HAProxy, pgpool-II)."""
