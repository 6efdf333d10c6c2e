"""A stand-in for the Kubernetes API's TokenReview endpoint, for OpenBao's kubernetes auth
method in tests: it accepts the one service-account token it was given, as the real API server
would accept a pod's mounted token, and refuses any other."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

REVIEW_PATH = "/apis/authentication.k8s.io/v1/tokenreviews"


class TokenReviewer:
    def __init__(
        self, namespace: str, account: str, uid: str = "6f1c2a7e-0000-4000-8000-000000000001"
    ) -> None:
        self.namespace, self.account, self.uid = namespace, account, uid
        self.token = jwt.encode(
            {
                "iss": "kubernetes/serviceaccount",
                "sub": f"system:serviceaccount:{namespace}:{account}",
                "kubernetes.io/serviceaccount/namespace": namespace,
                "kubernetes.io/serviceaccount/service-account.name": account,
                "kubernetes.io/serviceaccount/service-account.uid": uid,
            },
            # Service-account tokens are RS256/ES256 JWTs; OpenBao refuses other algorithms.
            ec.generate_private_key(ec.SECP256R1()),
            algorithm="ES256",
        )
        self.reviews: list[str] = []
        reviewer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                presented = body["spec"]["token"]
                reviewer.reviews.append(presented)
                status: dict[str, object] = {"authenticated": presented == reviewer.token}
                if presented == reviewer.token:
                    status["user"] = {
                        "username": f"system:serviceaccount:{namespace}:{account}",
                        "uid": uid,
                        "groups": ["system:serviceaccounts"],
                    }
                answer = json.dumps({"apiVersion": "authentication.k8s.io/v1",
                                     "kind": "TokenReview", "status": status}).encode()  # fmt: skip
                self.send_response(201 if self.path == REVIEW_PATH else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: object) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
