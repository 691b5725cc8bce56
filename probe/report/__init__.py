"""Output: the HTML report, the terminal summary and the JSON verdict."""
