# OpenBao for WakeDock's stack (deploy/compose.openbao.yaml): integrated (raft) storage of one
# node on its volume, TLS 1.3 on the internal data network, no UI.
# OpenBao 2 keeps no `file` storage: raft is its one built-in storage.
storage "raft" {
  # The official image's writable directory (owned by its user, uid 100): the named volume
  # mounted there takes that owner.
  path    = "/openbao/file"
  node_id = "openbao"
  # Raft's shortest timeouts (production tuning; the default 0 means 5 times longer): a new or
  # restarted node elects itself, and answers, seconds sooner.
  performance_multiplier = 1
}
listener "tcp" {
  address         = "0.0.0.0:8200"
  tls_cert_file   = "/run/secrets/openbao_tls_cert"
  tls_key_file    = "/run/secrets/openbao_tls_key"
  tls_min_version = "tls13"
}
api_addr     = "https://openbao:8200"
cluster_addr = "https://openbao:8201"
ui           = false
# No `disable_mlock`: OpenBao 2 does not lock memory at all (Vault's mlock, which needed the
# IPC_LOCK capability, was removed; it warns of the setting as unsupported). So the container needs
# no capability, and its memory, the unseal key included, may be swapped: turn swap off on the
# host, or encrypt it. The storage itself is always encrypted by OpenBao.
