"""Review: decisions on samples, what they mean, undo, and the cleaned labels they lead to."""
