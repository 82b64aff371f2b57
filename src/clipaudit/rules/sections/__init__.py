"""Pack sections, one module each: the pydantic models ``rules.schema`` assembles into a Pack."""
