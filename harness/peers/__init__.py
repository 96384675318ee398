"""Other poolers run beside the reference proxy: benchmark peers and known-leaky external targets."""
