# The JavaScript tools the benchmarks compare against, installed from the npm registry
# into the bench work dir (never into the repository).
JS_TOOLS="$WORK/js-tools"
if [ ! -f "$JS_TOOLS/.installed-v1" ]; then
  mkdir -p "$JS_TOOLS"
  (cd "$JS_TOOLS" && cat > package.json <<'JSON'
{ "name": "workz-bench-tools", "private": true, "packageManager": "npm@10.0.0" }
JSON
  npm install --no-audit --no-fund --loglevel=error \
    three@0.170.0 esbuild@0.28 webpack@5 webpack-cli@6 babel-loader@9 @babel/core@7 @babel/preset-env@7 \
    terser-webpack-plugin@5 turbo@2 >&2)
  touch "$JS_TOOLS/.installed-v1"
fi
export PATH="$JS_TOOLS/node_modules/.bin:$PATH"
