"""Simulation: LIBERO setup, environment wrapper, scripted expert and demonstration collection."""
