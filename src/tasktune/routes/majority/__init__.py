"""The majority-class baseline: the floor every other route must clear."""
