{
  # Three targets: wiremesh_core (a static library: the data path and the wrapper helpers, compiled
  # once), wiremesh (the product addon, src/native/binding.ts) and wiremesh_testhooks (exports only
  # tests, benchmarks and the testbed use, src/native/testhooks.ts; the product never loads it).
  "target_defaults": {
    "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
    "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS"],
    # Hidden visibility + -Bsymbolic-functions: Node 24's binary exports its own std::
    # instantiations (std::regex among them, once used here), built without exceptions; bound to
    # those, a throwing path aborted the process (test/unit/l7.test.ts under Node 24). L7 patterns
    # are RE2 (Debian libre2-dev): linear-time matching whatever the pattern. X25519 is libsodium's
    # (Debian libsodium-dev; docs/dependencies.md has the measurement).
    "cflags": ["-fPIC"],
    "cflags_cc": ["-std=c++17", "-O3", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers", "-fvisibility=hidden", "-fvisibility-inlines-hidden"],
    "cflags_cc!": ["-fno-exceptions"],
    "ldflags": ["-pthread", "-Wl,-Bsymbolic-functions"],
    "libraries": ["-lre2", "-lsodium"]
  },
  "targets": [
    {
      "target_name": "wiremesh_core",
      "type": "static_library",
      "sources": [
        "native/src/addon/util.cc",
        "native/src/crypto/aead.cc",
        "native/src/crypto/blake2s.cc",
        "native/src/crypto/chacha.cc",
        "native/src/crypto/noise.cc",
        "native/src/crypto/x25519.cc",
        "native/src/net/endpoint.cc",
        "native/src/net/offload.cc",
        "native/src/net/reject.cc",
        "native/src/net/tun.cc",
        "native/src/net/udp.cc",
        "native/src/policy/conntrack.cc",
        "native/src/policy/engine.cc",
        "native/src/policy/flatmap.cc",
        "native/src/policy/icmp.cc",
        "native/src/policy/ipcache.cc",
        "native/src/policy/policymap.cc",
        "native/src/proxy/http1.cc",
        "native/src/proxy/l7rules.cc",
        "native/src/proxy/lookup.cc",
        "native/src/proxy/loop.cc",
        "native/src/proxy/loop_accept.cc",
        "native/src/proxy/loop_client.cc",
        "native/src/proxy/loop_upstream.cc",
        "native/src/proxy/proxy.cc",
        "native/src/services/lb.cc",
        "native/src/services/lb_nat.cc",
        "native/src/services/maglev.cc",
        "native/src/wireguard/allowedips.cc",
        "native/src/wireguard/cookie.cc",
        "native/src/wireguard/device.cc",
        "native/src/wireguard/device_mesh.cc",
        "native/src/wireguard/device_peers.cc",
        "native/src/wireguard/device_rx.cc",
        "native/src/wireguard/device_tx.cc",
        "native/src/wireguard/device_txctl.cc",
        "native/src/wireguard/probe_monitor.cc",
        "native/src/wireguard/ratelimiter.cc"
      ]
    },
    {
      "target_name": "wiremesh",
      "dependencies": ["wiremesh_core"],
      "sources": [
        "native/src/addon/addon.cc",
        "native/src/addon/crypto_wrap.cc",
        "native/src/addon/device_policy_wrap.cc",
        "native/src/addon/device_services_wrap.cc",
        "native/src/addon/device_wrap.cc",
        "native/src/addon/malloc_wrap.cc",
        "native/src/addon/proxy_wrap.cc"
      ]
    },
    {
      "target_name": "wiremesh_testhooks",
      "dependencies": ["wiremesh_core"],
      "sources": [
        "native/src/net/delayline.cc",
        "native/src/policy/bench.cc",
        "native/src/services/maglev_bench.cc",
        "native/src/testhooks/conntrack_probe_wrap.cc",
        "native/src/testhooks/flatmap_probe_wrap.cc",
        "native/src/testhooks/policy_probe_wrap.cc",
        "native/src/testhooks/probe_monitor_wrap.cc",
        "native/src/testhooks/primitives_wrap.cc",
        "native/src/testhooks/testhooks.cc",
        "native/src/testhooks/tx_control_wrap.cc"
      ]
    }
  ]
}
