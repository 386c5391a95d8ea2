"""A fake plex.tv: the PIN sign-in flow, accounts, and which servers an account can reach.

Follows shared/reference/external-apis.md §1.1-1.3 and the checklist in §6: the exact PIN JSON,
404 code 1020 for an expired or unknown PIN (also when polled with another client identifier),
400 code 1000 without `X-Plex-Client-Identifier`, 401 code 1001 for a bad token, XML unless the
client sends `Accept: application/json`, and the legacy v1 endpoints that only speak XML.
"""

from __future__ import annotations

import itertools
import secrets
import string
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from xml.etree import ElementTree

from aiohttp import web
from medianest_server.plugin_api import Clock, SystemClock
from yarl import URL

from .wire import FakeService, wants_json, xml_element, xml_response

if TYPE_CHECKING:
    from .pms import FakePlexServer

STRONG_PIN_SECONDS = 1800  # captured strong PINs (§1.2); the spec's default for short codes is 900
SHORT_PIN_SECONDS = 900
PIN_NOT_FOUND = {"code": 1020, "message": "Code not found or expired"}
NO_CLIENT_ID = {"code": 1000, "message": "X-Plex-Client-Identifier is missing", "status": 400}
NO_PRODUCT = {"code": 1000, "message": "X-Plex-Product is missing", "status": 400}
BAD_TOKEN = {"code": 1001, "message": "User could not be authenticated", "status": 401}
LOCATION = {
    "code": "NL",
    "european_union_member": True,
    "continent_code": "EU",
    "country": "Netherlands",
    "city": "Utrecht",
    "time_zone": "Europe/Amsterdam",
    "postal_code": "3511",
    "in_privacy_restricted_country": True,
    "in_privacy_restricted_region": True,
    "subdivisions": "Utrecht",
    "coordinates": "52.09, 5.12",
}


@dataclass
class PlexAccount:
    """A plex.tv account; `token` is its plex.tv auth token."""

    id: int
    uuid: str
    username: str
    email: str
    thumb: str
    token: str = field(repr=False)


@dataclass
class FakePin:
    id: int
    code: str
    client_identifier: str
    product: str
    created_at: datetime
    expires_at: datetime
    auth_token: str | None = field(default=None, repr=False)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakePlexTv(FakeService):
    """plex.tv for tests. `app()` builds the aiohttp app; the state is on this object.

        tv = FakePlexTv(server=pms)            # pms: the FakePlexServer accounts may reach
        owner = tv.add_owner("alice")          # owns pms; its token is the owner's server token
        bob = tv.add_friend("bob", sections=[1])   # pms shared with bob (section 1 only)
        eve = tv.add_stranger("eve")           # a Plex account without access
        tv.approve_pin(pin_id, bob)            # the user approved the PIN in the Plex auth app
        tv.add_owned_server("Cabin", online=False)  # another server of the owner, switched off

    The owner's resources list `pms` with two connections, as Plex lists them: the local one
    (where the fake really answers) and a remote one. Where the reference shows https
    `*.plex.direct` addresses, the fake gives `http://127.0.0.1:<closed port>` ones, because
    tests only talk to 127.0.0.1; a remote address that does not answer from inside the
    network is what a real self-hoster sees too. The reference is silent on an offline
    server's entry beyond `presence: false`: the fake keeps its connections and an old
    `lastSeenAt`.

    `require_product=True` also refuses PINs without `X-Plex-Product` (the reference marks it
    optional, §1.1; the product is echoed in the PIN, where tests can check it). `clock` decides
    PIN expiry (a ManualClock lets tests move time).
    """

    def __init__(
        self,
        *,
        server: FakePlexServer | None = None,
        clock: Clock | None = None,
        require_product: bool = False,
        tie_pins_to_client: bool = True,
    ) -> None:
        super().__init__()
        self.server = server
        self.clock: Clock = clock or SystemClock()
        self.require_product = require_product
        self.tie_pins_to_client = tie_pins_to_client
        self.accounts: dict[str, PlexAccount] = {}  # by token
        self.pins: dict[int, FakePin] = {}
        self.owner: PlexAccount | None = None
        self.server_tokens: dict[int, str] = {}  # account id -> its access token for `server`
        self.other_servers: list[dict[str, Any]] = []  # more servers the owner owns
        self._ids = itertools.count(11111111, 1111)
        self._pin_ids = itertools.count(564964751)

    # -- accounts -------------------------------------------------------------------------

    def add_account(self, username: str, *, email: str | None = None) -> PlexAccount:
        """A plex.tv account with no access to the server."""
        account_id = next(self._ids)
        uuid = secrets.token_hex(8)
        account = PlexAccount(
            id=account_id,
            uuid=uuid,
            username=username,
            email=email or f"{username}@example.com",
            thumb=f"https://plex.tv/users/{uuid}/avatar?c=1700000000",
            token=secrets.token_urlsafe(15),
        )
        self.accounts[account.token] = account
        return account

    def add_owner(self, username: str = "owner", *, email: str | None = None) -> PlexAccount:
        """The account that owns `server`: its plex.tv token is also the server's admin token."""
        account = self.add_account(username, email=email)
        self.owner = account
        self.server_tokens[account.id] = account.token
        if self.server is not None:
            self.server.set_owner(account.token, account.username)
        return account

    def add_friend(
        self, username: str, *, sections: list[int] | None = None, email: str | None = None
    ) -> PlexAccount:
        """An account `server` is shared with (`sections`; None: every library). plex.tv hands
        it a server access token of its own, different from its plex.tv token (§1.3)."""
        account = self.add_account(username, email=email)
        token = secrets.token_urlsafe(15)
        self.server_tokens[account.id] = token
        if self.server is not None:
            self.server.share(token, sections=sections, account_id=account.id)
        return account

    def add_stranger(self, username: str = "stranger", *, email: str | None = None) -> PlexAccount:
        """A Plex account the server is not shared with."""
        return self.add_account(username, email=email)

    def add_owned_server(
        self,
        name: str,
        *,
        online: bool = True,
        machine_identifier: str | None = None,
        uri: str = "http://127.0.0.1:9",
    ) -> dict[str, Any]:
        """Another server of the owner (nothing answers at `uri` unless a test serves it)."""
        identifier = machine_identifier or secrets.token_hex(20)
        last_seen = self.clock.now() - (timedelta(0) if online else timedelta(days=12))
        entry = {
            "name": name,
            "product": "Plex Media Server",
            "productVersion": "1.40.5.8897-e5987a19d",
            "platform": "Linux",
            "platformVersion": "6.1.0",
            "device": "PC",
            "clientIdentifier": identifier,
            "createdAt": "2023-08-12T18:00:00Z",
            "lastSeenAt": _iso(last_seen),
            "provides": "server",
            "ownerId": None,
            "sourceTitle": None,
            "publicAddress": "203.0.113.9",
            "accessToken": secrets.token_urlsafe(15),
            "owned": True,
            "home": False,
            "synced": False,
            "relay": True,
            "presence": online,
            "httpsRequired": False,
            "publicAddressMatches": True,
            "dnsRebindingProtection": False,
            "natLoopbackSupported": True,
            "connections": [_connection(uri)],
        }
        self.other_servers.append(entry)
        return entry

    def server_token(self, account: PlexAccount) -> str | None:
        """The token `account` uses against the server (None: no access)."""
        return self.server_tokens.get(account.id)

    def revoke(self, account: PlexAccount) -> None:
        """plex.tv forgets the account's token (signed out everywhere): 401 from now on."""
        self.accounts.pop(account.token, None)

    # -- PINs -----------------------------------------------------------------------------

    def approve_pin(self, pin_id: int, account: PlexAccount) -> None:
        """The person signed in to the Plex auth app as `account` and approved the PIN."""
        self.pins[pin_id].auth_token = account.token

    def expire_pin(self, pin_id: int) -> None:
        self.pins[pin_id].expires_at = self.clock.now() - timedelta(seconds=1)

    def _live_pin(self, pin_id: int) -> FakePin | None:
        pin = self.pins.get(pin_id)
        if pin is None or self.clock.now() >= pin.expires_at:
            return None
        return pin

    # -- the app --------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.switches])
        app.router.add_post("/api/v2/pins", self._create_pin)
        app.router.add_get("/api/v2/pins/{pin_id}", self._get_pin)
        app.router.add_get("/api/v2/user", self._user)
        app.router.add_get("/api/v2/resources", self._resources)
        app.router.add_get("/api/v2/ping", self._ping)
        app.router.add_get("/api/resources", self._legacy_resources)
        app.router.add_get("/api/users", self._legacy_users)
        return app

    def _errors(self, request: web.Request, status: int, *errors: dict[str, Any]) -> web.Response:
        """`{"errors": [{"code", "message", "status"}]}` (§1.2, spec). The reference is
        silent on the XML form: the fake sends `<errors><error code= message= status=/>`."""
        if wants_json(request):
            return web.json_response({"errors": list(errors)}, status=status)
        root = ElementTree.Element("errors")
        for error in errors:
            root.append(xml_element("error", error))
        return xml_response(root, status=status)

    def _answer(
        self, request: web.Request, tag: str, body: Any, *, status: int = 200
    ) -> web.Response:
        if wants_json(request):
            return web.json_response(body, status=status)
        if isinstance(body, list):  # /api/v2/resources: <resources><resource/>...</resources>
            root = ElementTree.Element(tag, size=str(len(body)))
            for entry in body:
                root.append(xml_element(tag.rstrip("s"), _xml_resource(entry)))
            return xml_response(root, status=status)
        return xml_response(xml_element(tag, body), status=status)

    def _client_error(self, request: web.Request) -> web.Response | None:
        if not request.headers.get("X-Plex-Client-Identifier") and not request.query.get(
            "X-Plex-Client-Identifier"
        ):
            return self._errors(request, 400, NO_CLIENT_ID)
        return None

    def _account(self, request: web.Request) -> PlexAccount | None:
        token = request.headers.get("X-Plex-Token") or request.query.get("X-Plex-Token")
        return self.accounts.get(token) if token else None

    def _pin_json(self, request: web.Request, pin: FakePin) -> dict[str, Any]:
        remaining = max(0, int((pin.expires_at - self.clock.now()).total_seconds()))
        origin = f"{request.scheme}://{request.host}"
        return {
            "id": pin.id,
            "code": pin.code,
            "product": pin.product,
            "trusted": False,
            "qr": f"{origin}/api/v2/pins/qr/{pin.code}",
            "clientIdentifier": pin.client_identifier,
            "location": dict(LOCATION),
            "expiresIn": remaining,
            "createdAt": _iso(pin.created_at),
            "expiresAt": _iso(pin.expires_at),
            "authToken": pin.auth_token,
            "newRegistration": None,
        }

    async def _create_pin(self, request: web.Request) -> web.Response:
        if (error := self._client_error(request)) is not None:
            return error
        product = request.headers.get("X-Plex-Product") or request.query.get("X-Plex-Product")
        if self.require_product and not product:
            return self._errors(request, 400, NO_PRODUCT)
        strong = request.query.get("strong", "").lower() in ("true", "1")
        if strong:
            alphabet = string.ascii_lowercase + string.digits
            code = "".join(secrets.choice(alphabet) for _ in range(25))
        else:
            code = "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(4))
        now = self.clock.now().replace(microsecond=0)
        lifetime = STRONG_PIN_SECONDS if strong else SHORT_PIN_SECONDS
        pin = FakePin(
            id=next(self._pin_ids),
            code=code,
            client_identifier=request.headers.get("X-Plex-Client-Identifier")
            or request.query["X-Plex-Client-Identifier"],
            product=product or "",
            created_at=now,
            expires_at=now + timedelta(seconds=lifetime),
        )
        self.pins[pin.id] = pin
        return self._answer(request, "pin", self._pin_json(request, pin), status=201)

    async def _get_pin(self, request: web.Request) -> web.Response:
        if (error := self._client_error(request)) is not None:
            return error
        try:
            pin = self._live_pin(int(request.match_info["pin_id"]))
        except ValueError:
            pin = None
        client_id = request.headers.get("X-Plex-Client-Identifier") or request.query.get(
            "X-Plex-Client-Identifier"
        )
        if pin is None or (self.tie_pins_to_client and client_id != pin.client_identifier):
            return self._errors(request, 404, PIN_NOT_FOUND)
        return self._answer(request, "pin", self._pin_json(request, pin))

    async def _user(self, request: web.Request) -> web.Response:
        if (error := self._client_error(request)) is not None:
            return error
        account = self._account(request)
        if account is None:
            return self._errors(request, 401, BAD_TOKEN)
        body = account_json(account, owner=account is self.owner)
        if wants_json(request):
            return web.json_response(body)
        return xml_response(_xml_user(body))

    async def _ping(self, request: web.Request) -> web.Response:
        if (error := self._client_error(request)) is not None:
            return error
        if self._account(request) is None:
            return self._errors(request, 401, BAD_TOKEN)
        return self._answer(request, "pong", {"pong": True})

    def _server_entry(self, account: PlexAccount) -> dict[str, Any] | None:
        server, owner = self.server, self.owner
        token = self.server_tokens.get(account.id)
        if server is None or token is None or owner is None:
            return None
        owned = account.id == owner.id
        return {
            "name": server.friendly_name,
            "product": "Plex Media Server",
            "productVersion": server.version,
            "platform": "Linux",
            "platformVersion": "6.8.0",
            "device": "PC",
            "clientIdentifier": server.machine_identifier,
            "createdAt": "2021-05-01T10:00:00Z",
            "lastSeenAt": _iso(self.clock.now()),
            "provides": "server",
            "ownerId": None if owned else owner.id,
            "sourceTitle": None if owned else owner.username,
            "publicAddress": "203.0.113.7",
            "accessToken": token,
            "owned": owned,
            "home": False,
            "synced": False,
            "relay": True,
            "presence": True,
            "httpsRequired": False,
            "publicAddressMatches": owned,
            "dnsRebindingProtection": False,
            "natLoopbackSupported": True,
            "connections": [_connection(server.base_url), _connection(REMOTE_URI, local=False)],
        }

    def _resource_list(self, account: PlexAccount) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = []
        server = self._server_entry(account)
        if server is not None:
            entries.append(server)
        if self.owner is not None and account.id == self.owner.id:
            entries += self.other_servers
        entries.append(
            {  # every account also has a player device: clients must look at `provides`
                "name": f"{account.username}'s iPhone",
                "product": "Plex for iOS",
                "productVersion": "8.40",
                "platform": "iOS",
                "platformVersion": "18.2",
                "device": "iPhone",
                "clientIdentifier": f"iphone-{account.uuid}",
                "createdAt": "2023-02-01T08:00:00Z",
                "lastSeenAt": _iso(self.clock.now()),
                "provides": "client,player,pubsub-player",
                "ownerId": None,
                "sourceTitle": None,
                "publicAddress": "198.51.100.4",
                "accessToken": account.token,
                "owned": True,
                "home": False,
                "synced": False,
                "relay": False,
                "presence": False,
                "httpsRequired": False,
                "publicAddressMatches": False,
                "dnsRebindingProtection": False,
                "natLoopbackSupported": False,
                "connections": [],
            }
        )
        return entries

    async def _resources(self, request: web.Request) -> web.Response:
        if (error := self._client_error(request)) is not None:
            return error
        account = self._account(request)
        if account is None:
            return self._errors(request, 401, BAD_TOKEN)
        return self._answer(request, "resources", self._resource_list(account))

    async def _legacy_resources(self, request: web.Request) -> web.Response:
        """v1 `/api/resources`: XML only, whatever `Accept` says (§1.3)."""
        account = self._account(request)
        if account is None:
            return _legacy_unauthorized()
        root = ElementTree.Element("MediaContainer")
        entries = self._resource_list(account)
        root.set("size", str(len(entries)))
        for entry in entries:
            device = ElementTree.SubElement(root, "Device")
            for key in ("name", "product", "productVersion", "platform", "clientIdentifier"):
                device.set(key, str(entry[key]))
            device.set("provides", entry["provides"])
            device.set("owned", "1" if entry["owned"] else "0")
            device.set("accessToken", entry["accessToken"])
            device.set("createdAt", "1619863200")
            for connection in entry["connections"]:
                xml_connection = ElementTree.SubElement(device, "Connection")
                for key in ("protocol", "address", "port", "uri"):
                    xml_connection.set(key, str(connection[key]))
                xml_connection.set("local", "1" if connection["local"] else "0")
        return xml_response(root)

    async def _legacy_users(self, request: web.Request) -> web.Response:
        """v1 `/api/users`: the friends list, XML only, whatever `Accept` says (§1.3 B)."""
        account = self._account(request)
        if account is None:
            return _legacy_unauthorized()
        root = ElementTree.Element(
            "MediaContainer",
            friendlyName="myPlex",
            identifier="com.plexapp.plugins.myplex",
            machineIdentifier=secrets.token_hex(20),
        )
        friends = []
        if self.owner is not None and account.id == self.owner.id and self.server is not None:
            friends = [
                friend
                for friend in self.accounts.values()
                if friend.id != account.id and friend.id in self.server_tokens
            ]
        root.set("totalSize", str(len(friends)))
        root.set("size", str(len(friends)))
        for friend in friends:
            user = ElementTree.SubElement(
                root,
                "User",
                id=str(friend.id),
                title=friend.username,
                username=friend.username,
                email=friend.email,
                recommendationsPlaylistId="",
                thumb=friend.thumb,
                protected="0",
                home="0",
                allowTuners="0",
                allowSync="1",
                allowCameraUpload="0",
                allowChannels="0",
                allowSubtitleAdmin="0",
                filterAll="",
                filterMovies="",
                filterMusic="",
                filterPhotos="",
                filterTelevision="",
                restricted="0",
            )
            assert self.server is not None
            grant = self.server.grants.get(self.server_tokens[friend.id])
            ElementTree.SubElement(
                user,
                "Server",
                id=str(friend.id + 1),
                serverId="9999999",
                machineIdentifier=self.server.machine_identifier,
                name=self.server.friendly_name,
                lastSeenAt=str(int(self.clock.now().timestamp())),
                numLibraries=str(len(self.server.visible_sections(grant))),
                allLibraries="1" if grant is not None and grant.sections is None else "0",
                owned="0",
                pending="0",
            )
        return xml_response(root)


def account_json(account: PlexAccount, *, owner: bool = False) -> dict[str, Any]:
    """`GET /api/v2/user` for `account`: every field of the reference (§1.2) and every field
    the spec requires (its `UserProfile` adds `watchedIndicator`, `mediaReviewsVisibility`),
    values made up. The spec's optional `pin` (deprecated) and `subscriptions[]` are left out,
    as in the reference's example."""
    return {
        "id": account.id,
        "uuid": account.uuid,
        "username": account.username,
        "title": account.username,
        "email": account.email,
        "friendlyName": account.username.capitalize(),
        "locale": None,
        "confirmed": True,
        "joinedAt": 1500000000,
        "emailOnlyAuth": False,
        "hasPassword": True,
        "protected": False,
        "thumb": account.thumb,
        "authToken": account.token,
        "mailingListStatus": "unsubscribed",
        "mailingListActive": False,
        "scrobbleTypes": "",
        "country": "NL",
        "subscription": {
            "active": owner,
            "subscribedAt": "2023-03-24T00:00:00Z" if owner else None,
            "status": "Active" if owner else "Inactive",
            "paymentService": "",
            "plan": "lifetime" if owner else None,
            "features": ["webhooks", "hardware_transcoding"] if owner else [],
        },
        "subscriptionDescription": None,
        "restricted": False,
        "anonymous": None,
        "home": owner,
        "guest": False,
        "homeSize": 1,
        "homeAdmin": owner,
        "maxHomeSize": 15,
        "rememberExpiresAt": 1780000000,
        "profile": {
            "autoSelectAudio": True,
            "defaultAudioLanguage": "en",
            "defaultSubtitleLanguage": "en",
            "autoSelectSubtitle": 0,
            "defaultSubtitleAccessibility": 0,
            "defaultSubtitleForced": 0,
            "watchedIndicator": 1,  # required by the spec's UserProfile, absent from §1.2
            "mediaReviewsVisibility": 0,
        },
        "entitlements": ["all"] if owner else [],
        "roles": ["plexpass"] if owner else [],
        "services": [],
        "adsConsent": None,
        "adsConsentSetAt": None,
        "adsConsentReminderAt": None,
        "experimentalFeatures": False,
        "twoFactorEnabled": False,
        "backupCodesCreated": False,
        "attributionPartner": None,
    }


# the server's remote address: nothing answers there (a closed port on loopback)
REMOTE_URI = "http://127.0.0.1:1"


def _connection(base_url: str, *, local: bool = True) -> dict[str, Any]:
    url = URL(base_url)
    return {
        "protocol": url.scheme,
        "address": url.host,
        "port": url.port,
        "uri": str(url).rstrip("/"),
        "local": local,
        "relay": False,
        "IPv6": False,
    }


def _xml_resource(entry: dict[str, Any]) -> dict[str, Any]:
    """A v2 resource as XML attributes with `<connections><connection/></connections>`."""
    attrs = {key: value for key, value in entry.items() if key != "connections"}
    attrs["connections"] = {"connection": entry["connections"]}
    return attrs


def _xml_user(body: dict[str, Any]) -> ElementTree.Element:
    """`<user ...><subscription/><profile/><entitlements/><roles/></user>` as python-plexapi
    reads it (it needs the `scrobbleTypes` attribute, §1.7)."""
    root = xml_element("user", {k: v for k, v in body.items() if not isinstance(v, dict | list)})
    subscription = {k: v for k, v in body["subscription"].items() if k != "features"}
    sub = xml_element("subscription", subscription)
    for feature in body["subscription"]["features"]:
        ElementTree.SubElement(sub, "feature", id=feature)
    root.append(sub)
    root.append(xml_element("profile", body["profile"]))
    entitlements = ElementTree.SubElement(root, "entitlements")
    for entitlement in body["entitlements"]:
        ElementTree.SubElement(entitlements, "entitlement", id=entitlement)
    roles = ElementTree.SubElement(root, "roles")
    for role in body["roles"]:
        ElementTree.SubElement(roles, "role", id=role)
    ElementTree.SubElement(root, "services")
    return root


def _legacy_unauthorized() -> web.Response:
    """v1 endpoints refuse a bad token in XML [inferred: legacy plex.tv answers XML only]."""
    root = ElementTree.Element("errors")
    ElementTree.SubElement(root, "error").text = "Invalid authentication token."
    return xml_response(root, status=401)
