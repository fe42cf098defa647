"""The shop's support actions (rasa-sdk), its knowledge files and its order system."""
