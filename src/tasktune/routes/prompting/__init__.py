"""Route 1: prompt engineering — templates, label words, demonstrations, calibration, search."""
