"""Data for the platform: the ESCI format (real and synthetic), product text and sample readers."""
