"""Batch prediction beyond one machine: ``ray_engine`` runs ``bertfit predict`` on Ray Data."""
