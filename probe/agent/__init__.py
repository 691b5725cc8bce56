"""What runs inside profiled processes. Standard library only; never imports torch itself."""
