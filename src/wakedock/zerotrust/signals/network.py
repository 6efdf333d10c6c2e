"""Network: the admin's own lists of networks (CIDRs or single addresses).

- `deny`: a decisive deny. It wins over everything, the allow list included (a /32 inside an
  allowed /16 is still denied).
- `allow`: networks the admin vouches for. Not a free pass (zero trust): the attempt is still
  weighed, but it is never denied on points alone, only stepped up (engine rule 4), and the
  place and anonymiser lists do not deny it (the same networks are given to those signals as
  `exempt`). An office whose VPN exit is a hosting provider's address stays reachable.
- `trusted`: networks whose users are known (the office LAN behind the edge, a partner's
  range): they lower the score by `TRUSTED_SCORE`, and nothing else.
"""

from __future__ import annotations

from wakedock.zerotrust.base import Attempt, Decision, Finding
from wakedock.zerotrust.ranges import AddressRanges

DENY_SCORE = 100.0
TRUSTED_SCORE = -30.0


class NetworkSignal:
    name = "network"

    def __init__(
        self,
        *,
        deny: AddressRanges | None = None,
        allow: AddressRanges | None = None,
        trusted: AddressRanges | None = None,
    ) -> None:
        self._deny = deny or AddressRanges()
        self._allow = allow or AddressRanges()
        self._trusted = trusted or AddressRanges()

    def weigh(self, attempt: Attempt) -> Finding | None:
        if attempt.address in self._deny:
            return Finding(self.name, DENY_SCORE, "the address is on the network deny list",
                           decisive=Decision.DENY)  # fmt: skip
        trusted = attempt.address in self._trusted
        score = TRUSTED_SCORE if trusted else 0.0
        if attempt.address in self._allow:
            reason = "the address is on the network allow list: stepped up at most, never denied"
            if trusted:
                reason += "; a trusted network"
            return Finding(self.name, score, reason, decisive=Decision.ALLOW)
        if trusted:
            return Finding(self.name, score, "the address is in a trusted network")
        return None
