"""Deployments: a public model name routed to registry versions by weight (canary, A/B)."""
