# Groups `perf script -F ip,sym,dso` samples of one process into the
# categories docs/performance.md reports (share of that process's samples).
# Usage: perf script -i perf.data --pid PID -F ip,sym,dso | awk -f bench/perf-categories.awk
{
    line = $0
    if (line ~ /kernel\.kallsyms|\[unknown\]\)$/ && line ~ /kallsyms/) cat = "kernel (syscalls, TCP, futex, page cache)"
    else if (line ~ /p384|bignum_|_ec_|ec_GFp|ecdsa|bn_|wNAF|_ec_nistp|aws_lc_0_[0-9]+_0_ec/) cat = "P-384 verify (aws-lc)"
    else if (line ~ /sha256|sha512|sha2::|SHA(256|384|512)|sha_block/) cat = "SHA-2 (leaf, claim id, COSE digests)"
    else if (line ~ /sqlite3|pcache|wal[A-Z]|btree[A-Z]|Vdbe|Pager|pager|unixRead|unixWrite|unixSync/) cat = "SQLite"
    else if (line ~ /ciborium|coset|cbor/) cat = "CBOR/COSE parse"
    else if (line ~ /serde_json|serde::|serde_core|json/) cat = "JSON (statement, answers)"
    else if (line ~ /BTreeMap|btree::map|btree::node/) cat = "BTreeMap (claim parsing)"
    else if (line ~ /x509|(^| |<)der::|asn1|spki/) cat = "X.509/DER"
    else if (line ~ /malloc|free|realloc|_int_|memcpy|memmove|memset|memcmp|__libc|cfree|alloc::/) cat = "allocation and copying"
    else if (line ~ /tokio|mio::|parking_lot|futex|crossbeam|std::sync|std::thread/) cat = "tokio, threads, locks"
    else if (line ~ /hyper|axum|tower|http::|httparse|bytes::/) cat = "HTTP (hyper, axum, tower)"
    else if (line ~ /flate2|deflate|miniz|zlib/) cat = "gzip"
    else cat = "other"
    n[cat]++; total++
}
END {
    for (c in n) printf "%5.1f%%  %s\n", 100 * n[c] / total, c | "sort -rn"
    close("sort -rn")
    printf "%d samples\n", total
}
