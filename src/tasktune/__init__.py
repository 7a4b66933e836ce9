"""tasktune: adapt a pre-trained language model to a task by prompting, prompt tuning or fine-tuning,
measure every route on the same data, and keep the result as a versioned adaptation."""

__version__ = "0.1.0"
