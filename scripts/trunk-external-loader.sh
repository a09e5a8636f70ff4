#!/bin/sh
# Trunk post_build hook (trunk.toml): moves the inline <script type="module"> that Trunk writes
# into index.html to a file of its own, `attn-loader-<hash>.js`, so the page runs under a
# Content-Security-Policy without 'unsafe-inline' (docs/HOSTING.md).
set -eu
dir="${TRUNK_STAGING_DIR:?run by trunk as a post_build hook}"
html="$dir/index.html"
open='<script type="module">'
body=$(awk -v open="$open" 'index($0, open) { inside = 1; next } inside && /<\/script>/ { inside = 0; next } inside' "$html")
if [ -z "$body" ]; then
    echo "trunk-external-loader: no inline module script in $html" >&2
    exit 1
fi
name="attn-loader-$(printf '%s\n' "$body" | sha256sum | cut -c1-16).js"
printf '%s\n' "$body" > "$dir/$name"
awk -v open="$open" -v tag="<script type=\"module\" src=\"./$name\"></script>" '
    index($0, open) { print tag; inside = 1; next }
    inside && /<\/script>/ { inside = 0; next }
    !inside' "$html" > "$html.tmp"
mv "$html.tmp" "$html"
