"""Zero trust (docs/zerotrust.md): every sign-in, authenticated request and wake weighed by
network, place, client and behaviour into `allow`, `step_up` or `deny`, with its reasons."""
