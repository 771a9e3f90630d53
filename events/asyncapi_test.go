package events_test

import (
	"encoding/json"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/flightbook/flightbook/events"
)

const asyncAPIPath = "../docs/asyncapi.yaml"

// asyncAPI is the parsed document with local $ref resolution.
type asyncAPI struct {
	root map[string]any
}

func loadAsyncAPI(t *testing.T) asyncAPI {
	t.Helper()
	raw, err := os.ReadFile(asyncAPIPath)
	require.NoError(t, err)
	var root map[string]any
	require.NoError(t, yaml.Unmarshal(raw, &root))
	return asyncAPI{root: root}
}

// ref follows a local JSON pointer such as "#/components/schemas/Seats".
func (d asyncAPI) ref(t *testing.T, pointer string) map[string]any {
	t.Helper()
	require.True(t, strings.HasPrefix(pointer, "#/"), "only local refs: %s", pointer)
	var node any = d.root
	for _, part := range strings.Split(pointer[2:], "/") {
		part = strings.NewReplacer("~1", "/", "~0", "~").Replace(part)
		m, ok := node.(map[string]any)
		require.True(t, ok, "%s: %q is not inside an object", pointer, part)
		node, ok = m[part]
		require.True(t, ok, "%s: no %q", pointer, part)
	}
	m, ok := node.(map[string]any)
	require.True(t, ok, "%s is not an object", pointer)
	return m
}

// resolve returns obj, or what its $ref points at (repeatedly).
func (d asyncAPI) resolve(t *testing.T, obj map[string]any) map[string]any {
	t.Helper()
	for range 10 {
		r, ok := obj["$ref"].(string)
		if !ok {
			return obj
		}
		obj = d.ref(t, r)
	}
	t.Fatalf("$ref chain too long at %v", obj)
	return nil
}

func (d asyncAPI) section(t *testing.T, path ...string) map[string]any {
	t.Helper()
	return d.ref(t, "#/"+strings.Join(path, "/"))
}

// channelFor returns the name and object of the channel whose address is subject.
func (d asyncAPI) channelFor(t *testing.T, subject string) (string, map[string]any) {
	t.Helper()
	var name string
	var found map[string]any
	for n, ch := range d.section(t, "channels") {
		ch := ch.(map[string]any)
		if ch["address"] == subject {
			require.Nil(t, found, "two channels with address %s", subject)
			name, found = n, ch
		}
	}
	require.NotNil(t, found, "no channel with address %s", subject)
	return name, found
}

// onlyMessage returns the one message of a channel, resolved.
func (d asyncAPI) onlyMessage(t *testing.T, ch map[string]any) map[string]any {
	t.Helper()
	msgs := ch["messages"].(map[string]any)
	require.Len(t, msgs, 1, "channel %s", ch["address"])
	for _, m := range msgs {
		return d.resolve(t, m.(map[string]any))
	}
	return nil
}

// schemaFacts is what the test compares for one payload property.
type schemaFacts struct {
	Type   string
	Format string
	Enum   []string
}

func (d asyncAPI) facts(t *testing.T, prop map[string]any) schemaFacts {
	t.Helper()
	prop = d.resolve(t, prop)
	f := schemaFacts{}
	f.Type, _ = prop["type"].(string)
	f.Format, _ = prop["format"].(string)
	if e, ok := prop["enum"].([]any); ok {
		for _, v := range e {
			f.Enum = append(f.Enum, v.(string))
		}
	}
	return f
}

// goFacts derives the schema a Go payload field must have.
func goFacts(t *testing.T, f reflect.StructField) schemaFacts {
	t.Helper()
	if f.Type == reflect.TypeFor[time.Time]() {
		return schemaFacts{Type: "string", Format: "date-time"}
	}
	var out schemaFacts
	switch f.Type.Kind() {
	case reflect.String:
		out.Type = "string"
		if values, ok := events.EnumValues(reflect.Zero(f.Type).Interface()); ok {
			out.Enum = values
		}
		if f.Name == "BookingID" {
			out.Format = "uuid"
		}
	case reflect.Int, reflect.Int32:
		out = schemaFacts{Type: "integer", Format: "int32"}
	case reflect.Int64:
		out = schemaFacts{Type: "integer", Format: "int64"}
	default:
		t.Fatalf("field %s: no JSON Schema mapping for %s", f.Name, f.Type)
	}
	return out
}

func jsonName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	return name
}

// TestAsyncAPIMatchesContracts keeps docs/asyncapi.yaml honest: every contract has a channel on
// its subject carrying one message whose ce-type is the contract's and whose payload schema has
// exactly the struct's JSON fields, required list, types, formats and enum values; the
// publisher has a send operation and each consumer a receive one; the documented example
// decodes to the contract's example. And the document has nothing the code does not.
func TestAsyncAPIMatchesContracts(t *testing.T) {
	t.Parallel()
	d := loadAsyncAPI(t)
	assert.Equal(t, "3.0.0", d.root["asyncapi"])

	seenChannels := map[string]bool{}
	for _, c := range events.Contracts() {
		t.Run(c.Type, func(t *testing.T) {
			name, ch := d.channelFor(t, c.Subject)
			seenChannels[name] = true
			msg := d.onlyMessage(t, ch)
			assert.Equal(t, "application/json", msg["contentType"])

			// ce-type: the const in the message's header schema.
			var ceType any
			for _, part := range d.resolve(t, msg["headers"].(map[string]any))["allOf"].([]any) {
				props, _ := d.resolve(t, part.(map[string]any))["properties"].(map[string]any)
				if p, ok := props["ce-type"].(map[string]any); ok && p["const"] != nil {
					ceType = p["const"]
				}
			}
			assert.Equal(t, c.Type, ceType, "ce-type const of %s", name)

			payload := d.resolve(t, msg["payload"].(map[string]any))
			assert.Equal(t, "object", payload["type"])
			assert.Equal(t, false, payload["additionalProperties"], "decoding is strict, so the schema must say so")
			props := payload["properties"].(map[string]any)
			var docFields []string
			for p := range props {
				docFields = append(docFields, p)
			}
			assert.ElementsMatch(t, c.Fields(), docFields, "payload properties of %s", name)
			var docRequired []string
			for _, r := range payload["required"].([]any) {
				docRequired = append(docRequired, r.(string))
			}
			assert.ElementsMatch(t, c.Required(), docRequired, "required fields of %s", name)

			for f := range reflect.TypeOf(c.Example).Fields() {
				prop, ok := props[jsonName(f)].(map[string]any)
				if !assert.True(t, ok, "property %s", jsonName(f)) {
					continue
				}
				assert.Equal(t, goFacts(t, f), d.facts(t, prop), "schema of %s.%s", name, jsonName(f))
			}

			// Operations: exactly the publisher sends, exactly the consumers receive.
			var senders, receivers []string
			for _, op := range d.section(t, "operations") {
				op := op.(map[string]any)
				if op["channel"].(map[string]any)["$ref"] != "#/channels/"+name {
					continue
				}
				tags := op["tags"].([]any)
				require.Len(t, tags, 1)
				service := tags[0].(map[string]any)["name"].(string)
				switch op["action"] {
				case "send":
					senders = append(senders, service)
				case "receive":
					receivers = append(receivers, service)
				default:
					t.Errorf("operation on %s has action %v", name, op["action"])
				}
			}
			assert.Equal(t, []string{c.Publisher}, senders, "send operations on %s", name)
			assert.ElementsMatch(t, c.Consumers, receivers, "receive operations on %s", name)

			// The documented example is a real message of this contract.
			examples := msg["examples"].([]any)
			require.NotEmpty(t, examples)
			for _, ex := range examples {
				ex := ex.(map[string]any)
				h := nats.Header{}
				for k, v := range ex["headers"].(map[string]any) {
					h.Set(k, v.(string))
				}
				data, err := json.Marshal(ex["payload"])
				require.NoError(t, err)
				env, err := events.Decode(c.Subject, h, data)
				require.NoError(t, err, "example of %s", name)
				assert.Equal(t, c.Example, env.Event, "the document's example differs from the contract's")
			}
		})
	}

	// Nothing documented that the code does not have: every other channel is the DLQ.
	for name, ch := range d.section(t, "channels") {
		if seenChannels[name] {
			continue
		}
		assert.Equal(t, events.DLQSubject("{service}", "{consumer}"), ch.(map[string]any)["address"], "channel %s has no contract", name)
	}
	assert.Len(t, d.section(t, "channels"), len(events.Contracts())+1)
	assert.Len(t, d.section(t, "components", "messages"), len(events.Contracts())+1)
	for name, op := range d.section(t, "operations") {
		ref := op.(map[string]any)["channel"].(map[string]any)["$ref"].(string)
		d.ref(t, ref) // dangling channel refs fail here
		assert.True(t, slices.Contains([]string{"send", "receive"}, op.(map[string]any)["action"].(string)), name)
	}
}
