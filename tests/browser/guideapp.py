"""guideapp: assemble the client guide's React app at test time.

The guide's hooks and components must not be copied into this repository, so they are
cut out of the guide itself (shared/seed/*.txt beside the repository) each time the test
runs, byte for byte, and written next to the app shell in tests/browser/app/. The only
addition is one `export default` line under each component: the guide prints them as
plain `function ChatComponent()` declarations meant to be pasted into an app.
"""

import glob
import os
import re
import shutil

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
SEED_DIR = os.path.abspath(os.path.join(REPO, "..", "shared", "seed"))

# (heading in the guide, file in the app, a line the block must contain)
BLOCKS = [
    ("Chat WebSocket Hook (`useChatWebSocket.js`)", "hooks/useChatWebSocket.js",
     "export const useChatWebSocket = (token) => {"),
    ("Notification WebSocket Hook (`useNotificationWebSocket.js`)",
     "hooks/useNotificationWebSocket.js",
     "export const useNotificationWebSocket = (token) => {"),
    ("Chat Component", "ChatComponent.jsx", "function ChatComponent() {"),
    ("Notification Component", "NotificationComponent.jsx", "function NotificationComponent() {"),
]
EXPORTS = {
    "ChatComponent.jsx": "ChatComponent",
    "NotificationComponent.jsx": "NotificationComponent",
}


def find_guide():
    """The guide's path, or None when shared/seed/ (or a guide in it) is absent."""
    for path in sorted(glob.glob(os.path.join(SEED_DIR, "*.txt"))):
        with open(path, encoding="utf-8", errors="replace") as f:
            if "useChatWebSocket" in f.read():
                return path
    return None


def extract(guide_text):
    """{app file: code} for every block in BLOCKS. Raises AssertionError naming what is
    missing when the guide does not have the expected shape."""
    out = {}
    for heading, name, must in BLOCKS:
        m = re.search(r"^###\s+" + re.escape(heading) + r"[ \t]*\n"
                      r"(?:[ \t]*\n)*```(?:javascript|jsx|js)[ \t]*\n(.*?)^```[ \t]*$",
                      guide_text, re.M | re.S)
        assert m, f"guide: no code block under the heading '### {heading}'"
        code = m.group(1)
        assert must in code, f"guide: the block under '### {heading}' lacks {must!r}"
        out[name] = code
    return out


def assemble(guide_path, app_dir):
    """Write the app (shell from tests/browser/app/ + the guide's blocks) into app_dir,
    with node_modules linked to tests/browser/node_modules. Returns {file: code}."""
    with open(guide_path, encoding="utf-8") as f:
        blocks = extract(f.read())
    shutil.copytree(os.path.join(HERE, "app"), app_dir, dirs_exist_ok=True)
    for name, code in blocks.items():
        path = os.path.join(app_dir, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if name in EXPORTS:
            code += ("\n// added by tests/browser: the guide's component is not exported\n"
                     f"export default {EXPORTS[name]};\n")
        with open(path, "w", encoding="utf-8") as f:
            f.write(code)
    os.symlink(os.path.join(HERE, "node_modules"), os.path.join(app_dir, "node_modules"))
    return blocks
