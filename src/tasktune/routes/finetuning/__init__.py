"""Route 3: fine-tuning (full with a head, prompt-based, LoRA)."""
