"""Build the helm CLI from the Go module proxy for the chart tests (see build.py)."""
