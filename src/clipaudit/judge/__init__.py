"""A second opinion from a native multimodal model through OpenAI-compatible chat APIs."""
