# WakeDock's policy in the stack's OpenBao (scripts/stack-openbao-init.sh): its own paths of the
# KV v2 mount `secret/` (secrets.vault_mount), nothing else.
# Service secrets and the secrets API (secrets.service_prefix `services`): read, write, list.
path "secret/data/services/*" {
  capabilities = ["create", "read", "update"]
}
path "secret/metadata/services" {
  capabilities = ["list"]
}
path "secret/metadata/services/*" {
  capabilities = ["read", "list"]
}
# `secret:wakedock/...` references of its own settings, and the JWT key's rotation.
path "secret/data/wakedock/*" {
  capabilities = ["create", "read", "update"]
}
path "secret/metadata/wakedock/*" {
  capabilities = ["read", "list"]
}
