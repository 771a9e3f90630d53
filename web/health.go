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
func Health(r gin.IRouter, checks ...Check) { HealthWithDetail(r, nil, checks...) }

// HealthWithDetail is Health with detail's answer added to /readyz under "detail": figures for
// operators and tools (queue lag, dead letters). A detail that fails is reported under
// "detail_error" and does not make the service unready: readiness is the checks' alone.
func HealthWithDetail(r gin.IRouter, detail func(context.Context) (any, error), checks ...Check) {
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
		body := gin.H{"status": status, "checks": results}
		if detail != nil {
			d, err := detail(ctx)
			body["detail"] = d
			if err != nil {
				body["detail_error"] = err.Error()
			}
		}
		c.JSON(code, body)
	})
}
