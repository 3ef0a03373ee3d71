"""Programs the tests start as separate processes (real peers on loopback)."""
