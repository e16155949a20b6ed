package plutos

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	plutosv1 "github.com/plutos-ai/go-sdk/gen/plutos/v1"
)

// TestGeneratedCodeIsFresh compiles ../../protos with protoc and compares the descriptors with
// the ones embedded in gen/plutos/v1, so a proto change without ./gen.sh fails here. It needs a
// Python with grpcio-tools (as gen.sh does) and is skipped without one.
func TestGeneratedCodeIsFresh(t *testing.T) {
	python := os.Getenv("PYTHON")
	if python == "" {
		python, _ = filepath.Abs(filepath.Join("..", "..", ".venv", "bin", "python"))
		if _, err := os.Stat(python); err != nil {
			python = "python3"
		}
	}
	includes, err := exec.Command(python, "-c",
		"import google.api, grpc_tools, os; "+
			"print(os.path.dirname(os.path.dirname(list(google.api.__path__)[0]))); "+
			"print(os.path.join(list(grpc_tools.__path__)[0], '_proto'))").Output()
	if err != nil {
		t.Skipf("no Python with grpcio-tools and googleapis-common-protos (%v)", err)
	}
	inc := strings.Fields(string(includes))
	protos, _ := filepath.Abs(filepath.Join("..", "..", "protos"))
	files, _ := filepath.Glob(filepath.Join(protos, "plutos", "v1", "*.proto"))
	if len(files) == 0 {
		t.Skip("protos/ not found beside the module")
	}
	out := filepath.Join(t.TempDir(), "set.pb")
	args := []string{"-m", "grpc_tools.protoc", "-I" + protos, "-I" + inc[0], "-I" + inc[1], "--descriptor_set_out=" + out}
	for _, f := range files {
		rel, _ := filepath.Rel(protos, f)
		args = append(args, filepath.ToSlash(rel))
	}
	cmd := exec.Command(python, args...)
	cmd.Dir = protos
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("protoc: %v\n%s", err, msg)
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(raw, &set); err != nil {
		t.Fatal(err)
	}
	generated := map[string]protoreflect.FileDescriptor{
		"plutos/v1/admin.proto":        plutosv1.File_plutos_v1_admin_proto,
		"plutos/v1/http_options.proto": plutosv1.File_plutos_v1_http_options_proto,
		"plutos/v1/keys.proto":         plutosv1.File_plutos_v1_keys_proto,
		"plutos/v1/models.proto":       plutosv1.File_plutos_v1_models_proto,
		"plutos/v1/openai.proto":       plutosv1.File_plutos_v1_openai_proto,
		"plutos/v1/options.proto":      plutosv1.File_plutos_v1_options_proto,
		"plutos/v1/processing.proto":   plutosv1.File_plutos_v1_processing_proto,
		"plutos/v1/usage.proto":        plutosv1.File_plutos_v1_usage_proto,
		"plutos/v1/webhooks.proto":     plutosv1.File_plutos_v1_webhooks_proto,
	}
	if len(set.GetFile()) != len(generated) {
		t.Errorf("protos/ has %d files, gen/ has %d: run ./gen.sh", len(set.GetFile()), len(generated))
	}
	for _, fresh := range set.GetFile() {
		fd, ok := generated[fresh.GetName()]
		if !ok {
			t.Errorf("%s is not generated: run ./gen.sh", fresh.GetName())
			continue
		}
		if !proto.Equal(protodesc.ToFileDescriptorProto(fd), fresh) {
			t.Errorf("gen/ is stale for %s: run ./gen.sh", fresh.GetName())
		}
	}
}
