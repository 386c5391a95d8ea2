"""Pages are tested as a signed-in person sees them; the site fixtures live with the auth tests."""

from tests.auth.conftest import fast_password_hashing, make_site, site  # noqa: F401
