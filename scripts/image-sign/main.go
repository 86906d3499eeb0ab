// image-sign: push an OCI image (or image index) to a registry with a cosign-format signature,
// verify such a signature, and make the key pair. A thin command over the containers/image
// library (what podman and skopeo sign with), because Debian's podman and skopeo are built with
// sigstore signing disabled. The signatures are the ones `cosign sign --key` makes (a
// simple-signing payload in a `sha256-<digest>.sig` attachment), so `cosign verify --key` and a
// podman `sigstoreSigned` policy check them too.
//
//	image-sign keygen PASSPHRASE-FILE PREFIX         writes PREFIX.key (encrypted) and PREFIX.pub
//	image-sign push KEY PASSPHRASE-FILE SRC DST DIGEST-FILE
//	image-sign verify PUBLIC-KEY IMAGE@DIGEST
//
// SRC and DST are containers/image transports (oci:DIR:TAG, docker://HOST/REPO:TAG). Registries
// on 127.0.0.1 or localhost are reached over plain HTTP. Exit codes: 0 done or verified,
// 1 the signature did not verify, 2 bad input or any other failure.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/image"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/signature/sigstore"
	"go.podman.io/image/v5/transports/alltransports"
	"go.podman.io/image/v5/types"
)

func main() {
	err := run(os.Args[1:])
	var bad *badSignature
	switch {
	case err == nil:
	case errors.As(err, &bad):
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	default:
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(2)
	}
}

type badSignature struct{ err error }

func (b *badSignature) Error() string { return "signature not verified: " + b.err.Error() }

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: image-sign keygen|push|verify ... (see the source's first comment)")
	}
	switch {
	case args[0] == "keygen" && len(args) == 3:
		return keygen(args[1], args[2])
	case args[0] == "push" && len(args) == 6:
		return push(args[1], args[2], args[3], args[4], args[5])
	case args[0] == "verify" && len(args) == 3:
		return verify(args[1], args[2])
	}
	return fmt.Errorf("wrong arguments for %q (see the source's first comment)", args[0])
}

func keygen(passFile, prefix string) error {
	pass, err := os.ReadFile(passFile)
	if err != nil {
		return err
	}
	kp, err := sigstore.GenerateKeyPair(pass)
	if err != nil {
		return err
	}
	if err := os.WriteFile(prefix+".key", kp.PrivateKey, 0o600); err != nil {
		return err
	}
	return os.WriteFile(prefix+".pub", kp.PublicKey, 0o644)
}

// systemContext: signatures as registry attachments (registries.d, written for this run only),
// plain HTTP for a registry on this machine.
func systemContext(ref string) (*types.SystemContext, func(), error) {
	dir, err := os.MkdirTemp("", "image-sign-")
	if err != nil {
		return nil, nil, err
	}
	cleanup := func() { os.RemoveAll(dir) }
	conf := "default-docker:\n  use-sigstore-attachments: true\n"
	if err := os.WriteFile(filepath.Join(dir, "default.yaml"), []byte(conf), 0o644); err != nil {
		cleanup()
		return nil, nil, err
	}
	sys := &types.SystemContext{RegistriesDirPath: dir}
	host := strings.SplitN(strings.TrimPrefix(ref, "docker://"), "/", 2)[0]
	if strings.HasPrefix(host, "127.0.0.1") || strings.HasPrefix(host, "localhost") {
		sys.DockerInsecureSkipTLSVerify = types.OptionalBoolTrue
	}
	return sys, cleanup, nil
}

func push(keyFile, passFile, src, dst, digestFile string) error {
	pass, err := os.ReadFile(passFile)
	if err != nil {
		return err
	}
	srcRef, err := alltransports.ParseImageName(src)
	if err != nil {
		return err
	}
	dstRef, err := alltransports.ParseImageName(dst)
	if err != nil {
		return err
	}
	sys, cleanup, err := systemContext(dst)
	if err != nil {
		return err
	}
	defer cleanup()
	// the source is our own build: no policy to apply to it
	pc, err := signature.NewPolicyContext(&signature.Policy{
		Default: signature.PolicyRequirements{signature.NewPRInsecureAcceptAnything()}})
	if err != nil {
		return err
	}
	defer pc.Destroy()
	out, err := copy.Image(context.Background(), pc, dstRef, srcRef, &copy.Options{
		ImageListSelection:               copy.CopyAllImages,
		PreserveDigests:                  true, // the digest the chart is stamped with is the one built
		SignBySigstorePrivateKeyFile:     keyFile,
		SignSigstorePrivateKeyPassphrase: pass,
		DestinationCtx:                   sys,
	})
	if err != nil {
		return err
	}
	d, err := manifest.Digest(out)
	if err != nil {
		return err
	}
	return os.WriteFile(digestFile, []byte(d.String()+"\n"), 0o644)
}

func verify(pubKey, ref string) error {
	if !strings.Contains(ref, "@sha256:") {
		return fmt.Errorf("%s: verify an image by its digest (NAME@sha256:...), not a tag that can move", ref)
	}
	r, err := alltransports.ParseImageName("docker://" + strings.TrimPrefix(ref, "docker://"))
	if err != nil {
		return err
	}
	sys, cleanup, err := systemContext(ref)
	if err != nil {
		return err
	}
	defer cleanup()
	req, err := signature.NewPRSigstoreSigned(signature.PRSigstoreSignedWithKeyPath(pubKey),
		signature.PRSigstoreSignedWithSignedIdentity(signature.NewPRMMatchRepository()))
	if err != nil {
		return err
	}
	pc, err := signature.NewPolicyContext(&signature.Policy{
		Default:    signature.PolicyRequirements{signature.NewPRReject()},
		Transports: map[string]signature.PolicyTransportScopes{"docker": {"": {req}}}})
	if err != nil {
		return err
	}
	defer pc.Destroy()
	src, err := r.NewImageSource(context.Background(), sys)
	if err != nil {
		return err
	}
	defer src.Close()
	if ok, err := pc.IsRunningImageAllowed(context.Background(), image.UnparsedInstance(src, nil)); !ok {
		return &badSignature{err}
	}
	fmt.Printf("verified: %s is signed by %s\n", ref, pubKey)
	return nil
}
