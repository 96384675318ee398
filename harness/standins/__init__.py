"""Aurora stand-ins: local clusters of one writer and N replicating readers, one package per engine."""
