"""The card holder hears from the issuer: consent per channel, the events processing learns, the
messages the delivery worker sends by e-mail and SMS (docs/holders.md)."""
