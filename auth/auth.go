// Package auth verifies and issues the HS256 JWTs that flightbook's APIs accept.
//
// The token's sub claim is the user id; a role claim of "admin" may change the catalogue and
// read any booking.
package auth

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/golang-jwt/jwt/v5"

	"github.com/flightbook/flightbook/web"
)

// DevSecret is the signing secret used when none is configured. Anyone can mint tokens with
// it, so services log a loud warning when they run with it.
const DevSecret = "flightbook-dev-secret-do-not-use-in-production"

// RoleAdmin is the role that may change the catalogue and see every booking.
const RoleAdmin = "admin"

// Config holds the authentication settings.
type Config struct {
	Secret string `default:"flightbook-dev-secret-do-not-use-in-production" desc:"HS256 secret that signs and verifies bearer tokens; the default is for development only"`
	Issuer string `default:"flightbook" desc:"expected iss claim of tokens (and the one flightbook token writes)"`
}

// Claims are the claims flightbook reads from a token.
type Claims struct {
	Role string `json:"role,omitempty"`
	jwt.RegisteredClaims
}

// User is the authenticated caller.
type User struct {
	ID   string
	Role string
}

// IsAdmin reports whether u has the admin role.
func (u User) IsAdmin() bool { return u.Role == RoleAdmin }

// Authenticator signs and verifies tokens with one secret.
type Authenticator struct {
	secret []byte
	issuer string
	parser *jwt.Parser
}

// New returns an Authenticator for cfg, warning on log when cfg uses the development secret.
func New(cfg Config, log *slog.Logger) (*Authenticator, error) {
	if len(cfg.Secret) < 16 {
		return nil, errors.New("auth secret must be at least 16 bytes")
	}
	if cfg.Secret == DevSecret && log != nil {
		log.Warn("!!! USING THE PUBLIC DEVELOPMENT JWT SECRET: anyone can mint admin tokens. Set FLIGHTBOOK_AUTH_SECRET in production !!!")
	}
	return &Authenticator{
		secret: []byte(cfg.Secret),
		issuer: cfg.Issuer,
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
			jwt.WithIssuer(cfg.Issuer),
			jwt.WithExpirationRequired(),
			jwt.WithLeeway(30*time.Second),
		),
	}, nil
}

// Token returns a signed token for user with role (may be empty), valid for ttl.
func (a *Authenticator) Token(user, role string, ttl time.Duration) (string, error) {
	now := time.Now()
	claims := Claims{
		Role: role,
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   user,
			Issuer:    a.issuer,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		},
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(a.secret)
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return s, nil
}

// Verify parses and checks a token and returns its user.
func (a *Authenticator) Verify(token string) (User, error) {
	var claims Claims
	_, err := a.parser.ParseWithClaims(token, &claims, func(*jwt.Token) (any, error) { return a.secret, nil })
	if err != nil {
		return User{}, fmt.Errorf("invalid token: %w", err)
	}
	if claims.Subject == "" {
		return User{}, errors.New("invalid token: no sub claim")
	}
	return User{ID: claims.Subject, Role: claims.Role}, nil
}

const userKey = "flightbook.user"

// Optional authenticates a request that carries a bearer token and lets an anonymous one
// through; a token that is present but invalid is still refused with 401.
func (a *Authenticator) Optional() gin.HandlerFunc { return a.middleware(false) }

// Required refuses a request without a valid bearer token with 401.
func (a *Authenticator) Required() gin.HandlerFunc { return a.middleware(true) }

func (a *Authenticator) middleware(required bool) gin.HandlerFunc {
	return func(c *gin.Context) {
		h := c.GetHeader("Authorization")
		if h == "" {
			if required {
				c.Header("WWW-Authenticate", `Bearer realm="flightbook"`)
				web.AbortStatus(c, http.StatusUnauthorized, "unauthenticated", "missing Authorization: Bearer <token> header")
				return
			}
			c.Next()
			return
		}
		token, ok := strings.CutPrefix(h, "Bearer ")
		if !ok {
			c.Header("WWW-Authenticate", `Bearer realm="flightbook"`)
			web.AbortStatus(c, http.StatusUnauthorized, "unauthenticated", "Authorization header must be: Bearer <token>")
			return
		}
		u, err := a.Verify(strings.TrimSpace(token))
		if err != nil {
			c.Header("WWW-Authenticate", `Bearer realm="flightbook", error="invalid_token"`)
			web.AbortStatus(c, http.StatusUnauthorized, "invalid_token", err.Error())
			return
		}
		c.Set(userKey, u)
		c.Next()
	}
}

// RequireAdmin refuses a caller without the admin role with 403. It runs after Required or
// Optional; an anonymous caller gets 401.
func RequireAdmin() gin.HandlerFunc {
	return func(c *gin.Context) {
		u, ok := FromContext(c)
		if !ok {
			c.Header("WWW-Authenticate", `Bearer realm="flightbook"`)
			web.AbortStatus(c, http.StatusUnauthorized, "unauthenticated", "missing Authorization: Bearer <token> header")
			return
		}
		if !u.IsAdmin() {
			web.AbortStatus(c, http.StatusForbidden, "forbidden", "this operation needs the admin role")
			return
		}
		c.Next()
	}
}

// FromContext returns the authenticated user of the request, if any.
func FromContext(c *gin.Context) (User, bool) {
	v, ok := c.Get(userKey)
	if !ok {
		return User{}, false
	}
	u, ok := v.(User)
	return u, ok
}
