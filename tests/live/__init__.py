"""Throwaway real servers on loopback for the live tests, the demo and the benchmark."""
