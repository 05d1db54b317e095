"""End-to-end tests in JupyterLab + Chromium (a package so that `scope="package"` fixtures end with it)."""
