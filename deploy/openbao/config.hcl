# OpenBao for WakeDock's stack (deploy/compose.openbao.yaml): file storage on its volume, TLS
# 1.3 on the internal data network, no UI, mlock off (the container has no IPC_LOCK; swap
# should be off on the host instead).
storage "file" {
  path = "/openbao/data"
}
listener "tcp" {
  address         = "0.0.0.0:8200"
  tls_cert_file   = "/run/secrets/openbao_tls_cert"
  tls_key_file    = "/run/secrets/openbao_tls_key"
  tls_min_version = "tls13"
}
api_addr      = "https://openbao:8200"
disable_mlock = true
ui            = false
