"""The core image proxy: pictures from hosts a plugin declares, served from MediaNest itself.

`signing` makes and checks the signed `/images/proxy` URLs plugins put on pages, `fetch` gets an
image from its host (declared hosts only, redirects included; JPEG, PNG, WebP or GIF only; a size
cap), and `disk_cache` keeps what was fetched in the data folder under a size bound. The route
that ties them together is `medianest_server.web.image_proxy`.
"""
