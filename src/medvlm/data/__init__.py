"""Data pipeline: chat templates, the processor (image -> tensor, conversation -> ids + labels), collator, dataset."""
