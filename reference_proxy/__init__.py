"""A pooling proxy that behaves like Amazon RDS Proxy, for local development and as the harness's reference."""
