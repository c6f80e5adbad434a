-- What a failure to reach the Engine means, and what to do about it: the
-- messages a user reads when a connection is refused, a socket is missing or
-- not theirs, or TLS fails (a known OpenSSL error each). `self` is a client
-- (lockup.docker): its endpoint, socket and TLS settings.
local tostring = tostring
local string_format = string.format

local _M = {}

-- What a TLS failure means, and what to do: a message for the known ones,
-- or nil. `err` is libcurl's (OpenSSL's) message.
function _M.tls(self, err)
  local tls, at = self.tls, self.endpoint
  local ca = tls.ca and string_format("the CA in %s (%s)", tls.ca, tls.from == "tls" and "tls.ca" or "ca.pem")
    or "the system's CAs"
  local cert = tls.cert and string_format("this client's certificate %s", tls.cert) or "no client certificate"
  local function has(s) return err:find(s, 1, true) end
  if has("certificate has expired") or has("certificate is not yet valid") then
    return string_format("TLS to the Docker daemon at %s failed: the daemon's certificate is out of its dates "
      .. "(%s): renew it, or check this host's clock", at, err)
  elseif has("unable to get local issuer") or has("self-signed certificate") or has("self signed certificate")
    or has("certificate signature failure") or has("unable to verify the first certificate") then
    return string_format("TLS to the Docker daemon at %s failed: the daemon's certificate is not signed by %s "
      .. "(%s): give the CA that signed it (the file dockerd's --tlscacert names)", at, ca, err)
  elseif has("subject name") or has("does not match target host") or has("no alternative certificate") then
    return string_format("TLS to the Docker daemon at %s failed: the daemon's certificate is not for this name "
      .. "(%s): connect with a name or address in the certificate, or renew it with this one", at, err)
  elseif has("certificate required") or (not tls.cert and (has("alert bad certificate")
    or has("alert handshake failure") or has("alert certificate unknown"))) then
    return string_format("the Docker daemon at %s wants a client certificate and got none (%s): give tls.cert and "
      .. "tls.key (cert.pem and key.pem in DOCKER_CERT_PATH), signed by the CA the daemon trusts", at, err)
  elseif has("alert certificate expired") or has("alert bad certificate") or has("alert unknown ca")
    or has("alert certificate unknown") or has("alert decrypt error") or has("alert certificate revoked") then
    return string_format("the Docker daemon at %s refused %s (%s): it must be signed by the CA the daemon "
      .. "trusts (dockerd --tlscacert) and be within its dates", at, cert, err)
  elseif has("unable to set private key") or has("could not load PEM client certificate")
    or has("unable to use client certificate") or has("key values mismatch") then
    return string_format("TLS to the Docker daemon at %s: cannot use the client certificate %s and key %s (%s): "
      .. "they must be PEM files of one key pair", at, tostring(tls.cert), tostring(tls.key), err)
  elseif has("wrong version number") or has("packet length too long") or has("record layer failure") then
    return string_format("the Docker daemon at %s does not speak TLS there (%s): is that its plain port "
      .. "(2375)? Connect without tls, or to the port dockerd --tlsverify listens on (2376)", at, err)
  elseif has("SSL connection timeout") then
    return string_format("timed out in the TLS handshake with %s (%s): is a TLS server listening there "
      .. "(dockerd --tlsverify)?", at, err)
  elseif has("unexpected eof") or has("Connection reset") or has("connection closed")
    or has("SSL_ERROR_SYSCALL") then
    return string_format("the Docker daemon at %s closed the TLS connection (%s): it may have refused %s, "
      .. "or not speak TLS there; its log says why", at, err, cert)
  end
  return nil
end

local ERRNO_EACCES, ERRNO_ENOENT, ERRNO_ECONNREFUSED = 13, 2, 111

-- Why a connection to the Engine failed, and what to do: `err` and `errno`
-- from the connection (or a cosocket's text).
function _M.connect(self, err, errno)
  if errno == ERRNO_EACCES then
    return string_format("permission denied on %s: this user may not use the Docker daemon; "
      .. "add it to the docker group (sudo usermod -aG docker $USER, then log in again) or run as root",
      self.endpoint)
  elseif (errno == ERRNO_ENOENT or errno == ERRNO_ECONNREFUSED) and self.socket then
    return string_format("cannot connect to the Docker daemon at %s (%s): is dockerd running? "
      .. "Start it (sudo dockerd &, or the Docker service) or point DOCKER_HOST at the right socket",
      self.endpoint, errno == ERRNO_ENOENT and "no such socket" or "connection refused")
  elseif errno == ERRNO_ECONNREFUSED then
    return string_format("cannot connect to the Docker daemon at %s (connection refused): "
      .. "is dockerd listening there (dockerd -H %s)?", self.endpoint, self.endpoint)
  end
  return self.tls and _M.tls(self, err)
    or string_format("cannot connect to the Docker daemon at %s: %s", self.endpoint, err)
end

_M.EACCES, _M.ENOENT, _M.ECONNREFUSED = ERRNO_EACCES, ERRNO_ENOENT, ERRNO_ECONNREFUSED
return _M
