"""Local fake vendor API servers: real HTTP on 127.0.0.1 that check what the vendor checks."""
