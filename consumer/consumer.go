// Package consumer is the one way flightbook's services consume JetStream messages.
//
// A [Router] runs a watermill router over watermill-nats/v2 pkg/nats, bound to durable push
// consumers that it creates itself at start-up, never to ones the library would provision (those
// are deleted when an instance unsubscribes; see shared/MESSAGING.md). Every replica of a service
// joins the same queue group, so the replicas share the work and each message is handled by one
// of them at a time.
//
// A [Handler] returning nil acks its message. An error naks it, and JetStream redelivers it after
// the next delay of [Config.Backoff]. A panic is recovered and counts as an error. When the
// delivery numbered [Config.MaxDeliver] fails, or the handler returns a [Permanent] error, the
// message is published to the route's dead-letter subject (dlq.<service>.<route>) with its
// error, and only then acked, so the DLQ receives it once and the original is not delivered
// again. The server itself is told to redeliver without limit: the router enforces the bound,
// so a message whose deliveries were never acked (the process died, or the handler hung past
// the ack wait) still reaches the DLQ rather than being silently abandoned by the server.
//
// Delivery is at least once. Handlers are idempotent, naturally or through package inbox.
package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Config tunes how messages are consumed. Fields left at zero take the default in their tag, so
// Config{} works as well as one loaded with config.Load.
type Config struct {
	AckWait       time.Duration   `split_words:"true" default:"30s" desc:"how long one delivery may take before JetStream redelivers it; a handler still running then has its context cancelled"`
	MaxDeliver    int             `split_words:"true" default:"5" desc:"deliveries of one message before it goes to the dead-letter subject"`
	Backoff       []time.Duration `default:"100ms,500ms,2s,5s" desc:"delay before the 2nd, 3rd... delivery after a handler error; the last one repeats"`
	Concurrency   int             `default:"8" desc:"messages each replica handles at once, per route"`
	MaxAckPending int             `split_words:"true" default:"64" desc:"unacked messages JetStream hands out per route across all replicas; keep MaxAckPending/Concurrency handler runs well under AckWait"`
	CheckInterval time.Duration   `split_words:"true" default:"5s" desc:"how often each route checks that its durable consumer still exists, and recreates it if an operator deleted it or its stream was recreated"`
}

// Defaults of Config, used for zero fields.
const (
	DefaultAckWait       = 30 * time.Second
	DefaultMaxDeliver    = 5
	DefaultConcurrency   = 8
	DefaultMaxAckPending = 64
	DefaultCheckInterval = 5 * time.Second
)

// DefaultBackoff is the default of Config.Backoff.
var DefaultBackoff = []time.Duration{100 * time.Millisecond, 500 * time.Millisecond, 2 * time.Second, 5 * time.Second}

func (c Config) withDefaults() Config {
	if c.AckWait == 0 {
		c.AckWait = DefaultAckWait
	}
	if c.CheckInterval == 0 {
		c.CheckInterval = DefaultCheckInterval
	}
	if c.MaxDeliver == 0 {
		c.MaxDeliver = DefaultMaxDeliver
	}
	if len(c.Backoff) == 0 {
		c.Backoff = DefaultBackoff
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.MaxAckPending == 0 {
		c.MaxAckPending = DefaultMaxAckPending
	}
	return c
}

func (c Config) validate() error {
	var errs []error
	if c.AckWait < 0 {
		errs = append(errs, fmt.Errorf("ack wait %s is negative", c.AckWait))
	}
	if c.MaxDeliver < 1 {
		errs = append(errs, fmt.Errorf("max deliver %d: must be at least 1", c.MaxDeliver))
	}
	for _, d := range c.Backoff {
		if d < 0 {
			errs = append(errs, fmt.Errorf("backoff %s is negative", d))
		}
	}
	if c.Concurrency < 1 {
		errs = append(errs, fmt.Errorf("concurrency %d: must be at least 1", c.Concurrency))
	}
	if c.CheckInterval < 0 {
		errs = append(errs, fmt.Errorf("check interval %s is negative", c.CheckInterval))
	}
	if c.MaxAckPending < c.Concurrency {
		errs = append(errs, fmt.Errorf("max ack pending %d: must be at least the concurrency %d", c.MaxAckPending, c.Concurrency))
	}
	return errors.Join(errs...)
}

// delay is how long to wait before redelivering a message whose delivery number attempt failed.
func (c Config) delay(attempt int) time.Duration {
	i := min(max(attempt-1, 0), len(c.Backoff)-1)
	return c.Backoff[i]
}

// Delivery is one delivery of a message to a handler.
type Delivery struct {
	// ID identifies the message across redeliveries, replays and republishes: its Nats-Msg-Id,
	// else its ce-id, else "<stream>:<sequence>". Inboxes key on it.
	ID      string
	Subject string
	Header  nats.Header
	Data    []byte
	// Attempt is 1 on the first delivery, 2 on the first redelivery, and so on.
	Attempt int
	// Stream and Sequence say where the message is stored; Time is when it was stored.
	Stream   string
	Sequence uint64
	Time     time.Time
}

// Handler handles one delivery. It returns nil when the message is done with (it is acked), and
// an error to have it delivered again later (see the package documentation). ctx is cancelled
// when the delivery's ack wait runs out or the router shuts down.
type Handler func(ctx context.Context, d Delivery) error

// permanentError marks an error that retrying cannot fix.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent marks err as one that no retry can fix (an undecodable message, a contract
// violation): the message goes straight to the dead-letter subject. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// IsPermanent reports whether err, or an error it wraps, was marked by Permanent.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

// Invoke calls h with d and turns a panic into an error, so a bug in one handler costs one
// message, not the service. The router calls handlers through it; so should tools that feed
// messages to a handler directly (replay, DLQ redrive), to behave the same.
func Invoke(ctx context.Context, h Handler, d Delivery) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = &PanicError{Value: p, Stack: stack()}
		}
	}()
	return h(ctx, d)
}

// PanicError is the error Invoke returns for a handler that panicked.
type PanicError struct {
	Value any
	Stack string
}

func (e *PanicError) Error() string { return fmt.Sprintf("handler panicked: %v", e.Value) }

// Route is one handler registered on a Router: where it reads from and where its failures go.
// Operators' tools use it to find a handler's durable consumer and dead-letter subject.
type Route struct {
	Name       string // unique per service, a single subject token, e.g. "seat-hold-requested"
	Stream     string // the stream read, e.g. "BOOKING"
	Subject    string // the consumer's filter subject, e.g. "booking.seats.hold-requested"
	Durable    string // the durable consumer's name, Durable(service, Subject)
	DLQSubject string // where failed messages go, DLQSubject(namespace, service, Name)
	Handler    Handler
}

var invalidDurable = regexp.MustCompile(`[^A-Za-z0-9_-]`)

// Durable is the durable consumer name of service's subscription to subject: one durable per
// (service, subject), since durable names may not contain '.', '*' or '>'.
func Durable(service, subject string) string {
	s := strings.NewReplacer(".", "_", "*", "any", ">", "all").Replace(subject)
	return invalidDurable.ReplaceAllString(service+"_"+s, "_")
}

// DLQSubject is the dead-letter subject of a service's route: dlq.<service>.<route>, under the
// namespace if there is one.
func DLQSubject(namespace, service, route string) string {
	s := "dlq." + service + "." + route
	if namespace != "" {
		s = namespace + "." + s
	}
	return s
}

// deliverSubject is where JetStream pushes a durable's messages. It lies outside every stream's
// subjects, so that deliveries are never themselves stored.
func deliverSubject(durable string) string { return "_flightbook.deliver." + durable }

// Router consumes a service's routes. Build it with New, add routes with Handle, then Run.
type Router struct {
	nc        *nats.Conn
	js        jetstream.JetStream
	service   string
	namespace string
	cfg       Config
	log       *slog.Logger

	mu          sync.Mutex
	routes      []Route
	errs        []error
	started     bool
	running     chan struct{}
	runningOnce sync.Once
}

// New returns a Router consuming for service (which names its queue group and durables) with
// dead-letter subjects under namespace ("" in a normal deployment; tests and shared servers
// use one, see events.Topology). nc is the service's connection: each route opens its own
// connection with the same options, so that stopping a route can drain it without touching nc.
// js publishes to the dead-letter subjects.
func New(nc *nats.Conn, js jetstream.JetStream, service, namespace string, cfg Config, log *slog.Logger) (*Router, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("consumer: config: %w", err)
	}
	if !token(service) {
		return nil, fmt.Errorf("consumer: service name %q must be one subject token of letters, digits, '-' or '_'", service)
	}
	if log == nil {
		log = slog.Default()
	}
	return &Router{
		nc: nc, js: js, service: service, namespace: namespace, cfg: cfg,
		log:     log.With("service", service),
		running: make(chan struct{}),
	}, nil
}

var tokenRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func token(s string) bool { return tokenRE.MatchString(s) }

// Handle adds a route: h consumes the messages of stream that match subject. name must be unique
// in the service and a single subject token. Mistakes are reported by Run.
func (r *Router) Handle(name, stream, subject string, h Handler) {
	r.mu.Lock()
	defer r.mu.Unlock()
	route := Route{
		Name: name, Stream: stream, Subject: subject, Handler: h,
		Durable:    Durable(r.service, subject),
		DLQSubject: DLQSubject(r.namespace, r.service, name),
	}
	switch {
	case r.started:
		r.errs = append(r.errs, fmt.Errorf("route %s added after Run", name))
	case !token(name):
		r.errs = append(r.errs, fmt.Errorf("route name %q must be one subject token of letters, digits, '-' or '_'", name))
	case stream == "" || subject == "" || h == nil:
		r.errs = append(r.errs, fmt.Errorf("route %s: stream, subject and handler are required", name))
	default:
		for _, o := range r.routes {
			if o.Name == name || o.Durable == route.Durable {
				r.errs = append(r.errs, fmt.Errorf("route %s: name or subject %s already taken by route %s", name, subject, o.Name))
				return
			}
		}
		r.routes = append(r.routes, route)
	}
}

// Routes returns the routes added so far.
func (r *Router) Routes() []Route {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Route(nil), r.routes...)
}

// Route returns the route called name.
func (r *Router) Route(name string) (Route, bool) {
	for _, rt := range r.Routes() {
		if rt.Name == name {
			return rt, true
		}
	}
	return Route{}, false
}

// Running is closed once every route is subscribed and receiving. It stays open if Run fails
// before that, so wait on it together with Run's result.
func (r *Router) Running() <-chan struct{} { return r.running }

// Ready reports an error until every route has been subscribed once: a readiness check, so
// that a replica takes traffic only once it also consumes its replies.
func (r *Router) Ready(context.Context) error {
	select {
	case <-r.running:
		return nil
	default:
		return errors.New("consumer routes not subscribed yet")
	}
}

// ConsumerConfig is the durable consumer the router creates for route: a push consumer with
// explicit acks delivering to the service's queue group from the start of the stream (a new
// consumer must not miss what was published before it first ran).
//
// The server's MaxDeliver is unlimited and BackOff is left unset on purpose. The router bounds
// deliveries itself (see the package documentation), and JetStream's BackOff replaces AckWait
// for each delivery, so a list of short retry delays would have the server redeliver a message
// whose handler is still running; retry delays are sent with each nak instead.
func (r *Router) ConsumerConfig(route Route) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:        route.Durable,
		Description:    fmt.Sprintf("flightbook %s: route %s", r.service, route.Name),
		DeliverSubject: deliverSubject(route.Durable),
		DeliverGroup:   r.service,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		FilterSubject:  route.Subject,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        r.cfg.AckWait,
		MaxDeliver:     -1,
		MaxAckPending:  r.cfg.MaxAckPending,
		ReplayPolicy:   jetstream.ReplayInstantPolicy,
	}
}

// EnsureConsumers creates the durable consumer of every route, or updates it to the current
// config. Run calls it; operators' tools may call it without running the routes.
func (r *Router) EnsureConsumers(ctx context.Context) error {
	for _, route := range r.Routes() {
		if _, err := r.js.CreateOrUpdatePushConsumer(ctx, route.Stream, r.ConsumerConfig(route)); err != nil {
			return fmt.Errorf("consumer: create or update durable %s on stream %s (%s): %w", route.Durable, route.Stream, route.Subject, err)
		}
	}
	return nil
}

// Run creates the durable consumers, subscribes every route and handles messages until ctx is
// cancelled. It then stops taking messages, lets the handlers finish what they hold (up to
// AckWait; messages not acked by then are redelivered later, to this replica or another) and
// returns nil. Setting the routes up is retried with backoff while it fails (NATS down or
// restarting), so a broker outage at start-up does not stop the service. It returns an error if
// the routes are invalid or the router stops by itself.
func (r *Router) Run(ctx context.Context) error {
	r.mu.Lock()
	if r.started {
		r.mu.Unlock()
		return errors.New("consumer: router already run")
	}
	r.started = true
	errs := errors.Join(r.errs...)
	routes := append([]Route(nil), r.routes...)
	r.mu.Unlock()
	if errs != nil {
		return fmt.Errorf("consumer: %w", errs)
	}
	if len(routes) == 0 {
		return errors.New("consumer: no routes")
	}
	// A broker that is down or restarting when the service starts (or while it subscribes)
	// must not stop the service: setting up is retried until it works or ctx ends.
	for failures := 0; ; failures++ {
		err := r.run(ctx, routes)
		if !errors.Is(err, errSetup) || ctx.Err() != nil {
			return err
		}
		wait := min(250*time.Millisecond<<min(failures, 5), 5*time.Second)
		r.log.Warn("consumer: setting up the routes failed; retrying", "error", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// errSetup marks the errors of setting routes up, which Run retries.
var errSetup = errors.New("consumer: setting up")

// run sets the routes up and handles messages until ctx is cancelled, then drains.
func (r *Router) run(ctx context.Context, routes []Route) error {
	if err := r.EnsureConsumers(ctx); err != nil {
		return fmt.Errorf("%w: %w", errSetup, err)
	}

	wlog := watermillLogger{watermill.NewSlogLoggerWithLevelMapping(r.log.With("component", "watermill"),
		map[slog.Level]slog.Level{slog.LevelInfo: slog.LevelDebug})}
	wr, err := message.NewRouter(message.RouterConfig{CloseTimeout: r.cfg.AckWait}, wlog)
	if err != nil {
		return fmt.Errorf("consumer: watermill router: %w", err)
	}
	var conns []*routeConn
	defer func() {
		for _, c := range conns {
			c.nc.Close()
		}
	}()
	for _, route := range routes {
		c, err := r.connect(route)
		if err != nil {
			return fmt.Errorf("%w: %w", errSetup, err)
		}
		conns = append(conns, c)
		sub, err := wmnats.NewSubscriberWithNatsConn(c.nc, r.subscriberConfig(route), wlog)
		if err != nil {
			return fmt.Errorf("%w: route %s: subscriber: %w", errSetup, route.Name, err)
		}
		wr.AddConsumerHandler(route.Name, route.Subject, sub, r.handle(route))
	}

	// The watermill router gets a context that ctx's cancellation does not reach: cancelling
	// it would make watermill-nats drop the acks of messages still in flight. Shutdown below
	// drains first and closes the router after.
	done := make(chan error, 1)
	go func() { done <- wr.Run(context.WithoutCancel(ctx)) }()
	select {
	case <-wr.Running():
		r.runningOnce.Do(func() { close(r.running) })
		r.log.Info("consuming", "routes", len(routes), "concurrency", r.cfg.Concurrency)
	case err := <-done:
		return fmt.Errorf("%w: start: %w", errSetup, err)
	case <-ctx.Done():
	}

	watchCtx, stopWatch := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() { defer close(watched); r.watchConsumers(watchCtx, routes) }()
	defer func() { stopWatch(); <-watched }()

	select {
	case <-ctx.Done():
	case err := <-done:
		if err == nil {
			err = errors.New("every route stopped")
		}
		return fmt.Errorf("consumer: router stopped: %w", err)
	}

	r.log.Info("stopping: draining routes", "timeout", r.cfg.AckWait)
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(c.drain)
	}
	wg.Wait()
	if err := wr.Close(); err != nil {
		r.log.Warn("closing watermill router", "error", err)
	}
	<-done
	r.log.Info("stopped")
	return nil
}

// watchConsumers recreates a route's durable consumer when it is found missing: deleted by an
// operator, or gone with its stream when the stream was deleted and recreated (the recovery
// runbook's "recreate the stream, republish from the outbox"). The subscriptions listen on the
// durable's deliver subject, so a recreated durable delivers to them again without a restart;
// it starts from the beginning of the stream and the handlers' idempotency absorbs what was
// already processed. A missing stream is logged once; the route waits for it.
func (r *Router) watchConsumers(ctx context.Context, routes []Route) {
	t := time.NewTicker(r.cfg.CheckInterval)
	defer t.Stop()
	streamMissing := map[string]bool{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, route := range routes {
			_, err := r.js.PushConsumer(ctx, route.Stream, route.Durable)
			switch {
			case err == nil:
				streamMissing[route.Name] = false
			case errors.Is(err, jetstream.ErrStreamNotFound):
				if !streamMissing[route.Name] {
					r.log.Error("consumer: the route's stream is missing; waiting for it to be recreated",
						"route", route.Name, "stream", route.Stream)
				}
				streamMissing[route.Name] = true
			case errors.Is(err, jetstream.ErrConsumerNotFound):
				if _, err := r.js.CreateOrUpdatePushConsumer(ctx, route.Stream, r.ConsumerConfig(route)); err != nil {
					r.log.Warn("consumer: recreating a missing durable consumer failed", "route", route.Name, "durable", route.Durable, "error", err)
					continue
				}
				streamMissing[route.Name] = false
				r.log.Warn("consumer: durable consumer was missing; recreated it, delivering the stream from its start",
					"route", route.Name, "durable", route.Durable, "stream", route.Stream)
			default:
				// NATS unreachable: the connection's own handlers report it.
			}
		}
	}
}

// routeConn is the connection a route's subscriptions use, and a way to know it is closed.
type routeConn struct {
	nc      *nats.Conn
	closed  chan struct{}
	timeout time.Duration
	log     *slog.Logger
}

// connect opens route's own connection with the service connection's options. Draining it
// stops the route's deliveries and waits for the in-flight ones to be acked, which neither
// watermill nor the shared connection can do for one route.
func (r *Router) connect(route Route) (*routeConn, error) {
	c := &routeConn{closed: make(chan struct{}), timeout: r.cfg.AckWait, log: r.log.With("route", route.Name)}
	opts := r.nc.Opts
	opts.Name = strings.TrimSpace(opts.Name + " consumer " + route.Name)
	opts.DrainTimeout = r.cfg.AckWait
	opts.ClosedCB = func(*nats.Conn) { close(c.closed) }
	nc, err := opts.Connect()
	if err != nil {
		return nil, fmt.Errorf("consumer: route %s: connect: %w", route.Name, err)
	}
	c.nc = nc
	return c, nil
}

func (c *routeConn) drain() {
	if err := c.nc.Drain(); err != nil {
		c.log.Warn("drain", "error", err)
	}
	select {
	case <-c.closed:
	case <-time.After(c.timeout + 5*time.Second):
		c.log.Warn("drain did not finish; closing")
		c.nc.Close()
	}
}

// subscriberConfig binds watermill-nats to the route's durable, created beforehand, with manual
// explicit acks. Each setting here guards against a way watermill-nats loses or repeats
// messages when left at its default (shared/MESSAGING.md).
func (r *Router) subscriberConfig(route Route) wmnats.SubscriberSubscriptionConfig {
	return wmnats.SubscriberSubscriptionConfig{
		Unmarshaler: unmarshaler{},
		// Each subscription hands the router one message at a time and waits for its ack, so the
		// number of subscriptions is the handler concurrency.
		SubscribersCount: r.cfg.Concurrency,
		// watermill's own wait for a handler; at the server's AckWait so it never gives up on
		// a handler earlier than JetStream would.
		AckWaitTimeout: r.cfg.AckWait,
		CloseTimeout:   r.cfg.AckWait,
		// Must equal the durable's DeliverGroup.
		QueueGroupPrefix: r.service,
		NakDelay:         backoff(r.cfg),
		JetStream: wmnats.JetStreamConfig{
			AutoProvision: false,
			SubscribeOptions: []nats.SubOpt{
				nats.Bind(route.Stream, route.Durable),
				nats.ManualAck(),
				nats.AckExplicit(),
			},
			// Acks wait for the server's confirmation, so a message the handler finished is
			// known acked before the next one is taken, and a dead-lettered one is not redelivered.
			AckAsync:          false,
			DurableCalculator: func(string, string) string { return route.Durable },
		},
	}
}

// watermillLogger is watermill's slog adapter, except that the errors watermill-nats reports for
// a connection the router drained on purpose (it unsubscribes and closes after the drain) are
// logged at debug level: they are how every shutdown ends, not something to page anyone about.
type watermillLogger struct{ watermill.LoggerAdapter }

func (l watermillLogger) Error(msg string, err error, fields watermill.LogFields) {
	if errors.Is(err, nats.ErrConnectionClosed) {
		l.Debug(msg+": "+err.Error(), fields)
		return
	}
	l.LoggerAdapter.Error(msg, err, fields)
}

func (l watermillLogger) With(fields watermill.LogFields) watermill.LoggerAdapter {
	return watermillLogger{l.LoggerAdapter.With(fields)}
}
