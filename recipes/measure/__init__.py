"""Measuring models: accuracy and its uncertainty, latency, the plots of both."""
