package web

import (
	"context"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
)

// Check is one readiness dependency: a name and a function that fails when it is unreachable.
type Check struct {
	Name  string
	Check func(ctx context.Context) error
}

// Health registers /healthz (the process serves HTTP) and /readyz (every check passes within
// two seconds). /readyz answers 503 naming each failing dependency, so a load balancer stops
// sending traffic and an operator sees why.
func Health(r gin.IRouter, checks ...Check) {
	r.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	r.GET("/readyz", func(c *gin.Context) {
		ctx, cancel := context.WithTimeout(c.Request.Context(), 2*time.Second)
		defer cancel()
		status, code := "ok", http.StatusOK
		results := make(map[string]string, len(checks))
		for _, ch := range checks {
			if err := ch.Check(ctx); err != nil {
				results[ch.Name] = err.Error()
				status, code = "unavailable", http.StatusServiceUnavailable
				continue
			}
			results[ch.Name] = "ok"
		}
		c.JSON(code, gin.H{"status": status, "checks": results})
	})
}
