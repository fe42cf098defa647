"""Channel adapters: parse a transport's payload into an InboundMessage, render the replies."""
