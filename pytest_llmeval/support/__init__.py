"""What every layer may use: located config problems, text helpers, atomic writes."""
