"""Label banks: versioned label sets (prompts and few-shot examples) that the server scores against."""
