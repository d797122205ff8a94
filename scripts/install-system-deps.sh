#!/bin/sh
# Install the Debian data packages kgzsl uses, when they are missing.
#   wordnet-base          WordNet 3.0 files in /usr/share/wordnet (the class graph)
#   dataset-fashion-mnist Fashion-MNIST in /usr/share/datasets/fashion-mnist (benchmark data)
# With --browser (make test), also the browser the page test drives (tests/serve/test_browser.py):
#   chromium chromium-driver   headless Chromium and its WebDriver; without them that test skips
set -u
missing=""
[ -f /usr/share/wordnet/data.noun ] || [ -n "${KGZSL_WORDNET_DIR:-}" ] || missing="$missing wordnet-base"
[ -d /usr/share/datasets/fashion-mnist ] || missing="$missing dataset-fashion-mnist"
if [ "${1:-}" = "--browser" ]; then
    command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
    command -v chromedriver >/dev/null 2>&1 || missing="$missing chromium-driver"
fi
[ -z "$missing" ] && exit 0
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "installing Debian packages:$missing"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null \
        && exit 0
    echo "apt-get could not install:$missing" >&2
elif command -v sudo >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo -n apt-get update -qq >/dev/null && sudo -n apt-get install -y -qq --no-install-recommends $missing >/dev/null && exit 0
fi
cat >&2 <<MSG
kgzsl: these system packages are missing:$missing
  Install them by hand:   sudo apt-get install$missing
  Without Debian: WordNet 3.0 via   python -c "import nltk; nltk.download('wordnet')"
  (or set KGZSL_WORDNET_DIR to a folder with data.noun / index.noun).
MSG
case "$missing" in *wordnet-base*) exit 1 ;; esac
exit 0
