"""Edge Harness: compress, export, run and measure generative models for edge devices."""

__version__ = "0.1.0"
