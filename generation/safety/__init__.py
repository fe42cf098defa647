"""The safety checkpoint every reply passes and the guard every incoming message passes."""

from generation.safety.text import clean_text
from generation.safety.verdict import SafetyFilter, SafetyPolicy, Verdict, VerdictAction

__all__ = ["SafetyFilter", "SafetyPolicy", "Verdict", "VerdictAction", "clean_text"]
