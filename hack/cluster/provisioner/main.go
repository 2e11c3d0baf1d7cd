// Command provisioner is the local cluster's dynamic volume provisioner: the
// provision controller of sig-storage-lib-external-provisioner (it watches
// claims, creates and binds PersistentVolumes, follows the StorageClass'
// reclaim policy and records events) around the smallest volume there is, a
// directory under -root on this machine. The machine that runs the control
// plane is also the one a real node runs its containers on, so the directory
// is the volume's data there; on kwok nodes only the objects matter.
//
// hostPath volumes ignore fsGroup, and a managed datastore runs as a user the
// provisioner cannot know. So each directory gets a group of its own (the
// library's GID allocator, in the range of the StorageClass parameters gidMin
// and gidMax), mode 2770, and the PersistentVolume names that group in
// pv.beta.kubernetes.io/gid: the kubelet adds it to the supplemental groups of
// every pod that mounts the volume, whatever user that pod runs as, and nobody
// else on the machine can read the data.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	"sigs.k8s.io/sig-storage-lib-external-provisioner/v13/controller"
	"sigs.k8s.io/sig-storage-lib-external-provisioner/v13/gidallocator"
)

// hostDir provisions one directory per volume under root.
type hostDir struct {
	root string
	gids gidallocator.Allocator
	// privileged: only root may give a directory a group it is not in.
	privileged bool
}

var _ controller.Provisioner = (*hostDir)(nil)

// Provision makes the volume's directory and returns its PersistentVolume;
// the library adds the claim reference, the class and the provisioned-by
// annotation, and the PV controller binds it.
func (p *hostDir) Provision(ctx context.Context, o controller.ProvisionOptions) (*v1.PersistentVolume, controller.ProvisioningState, error) {
	if o.PVC.Spec.Selector != nil {
		return nil, controller.ProvisioningFinished, errors.New("spec.selector is not supported: a new directory has no labels to match")
	}
	for _, mode := range o.PVC.Spec.AccessModes {
		if mode != v1.ReadWriteOnce && mode != v1.ReadWriteOncePod {
			return nil, controller.ProvisioningFinished, fmt.Errorf("access mode %s is not supported: a directory lives on one node (use ReadWriteOnce)", mode)
		}
	}
	if o.PVC.Spec.VolumeMode != nil && *o.PVC.Spec.VolumeMode == v1.PersistentVolumeBlock {
		return nil, controller.ProvisioningFinished, errors.New("volumeMode Block is not supported: the volume is a directory")
	}
	gid := os.Getegid()
	if p.privileged {
		var err error
		if gid, err = p.gids.AllocateNext(klog.FromContext(ctx), o); err != nil {
			return nil, controller.ProvisioningFinished, fmt.Errorf("no group for the volume: %w", err)
		}
	}
	dir := filepath.Join(p.root, o.PVName)
	pv := &v1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{
			Name:        o.PVName,
			Annotations: map[string]string{gidallocator.VolumeGidAnnotationKey: strconv.Itoa(gid)},
		},
		Spec: v1.PersistentVolumeSpec{
			// The API server defaults a class' policy to Delete when it names none.
			PersistentVolumeReclaimPolicy: *o.StorageClass.ReclaimPolicy,
			StorageClassName:              o.StorageClass.Name,
			AccessModes:                   o.PVC.Spec.AccessModes,
			Capacity:                      v1.ResourceList{v1.ResourceStorage: o.PVC.Spec.Resources.Requests[v1.ResourceStorage]},
			MountOptions:                  o.StorageClass.MountOptions,
			PersistentVolumeSource: v1.PersistentVolumeSource{
				HostPath: &v1.HostPathVolumeSource{Path: dir, Type: ptr(v1.HostPathDirectory)},
			},
		},
	}
	if err := p.makeDir(dir, gid); err != nil {
		p.release(ctx, pv)
		return nil, controller.ProvisioningFinished, err
	}
	return pv, controller.ProvisioningFinished, nil
}

// makeDir creates dir (or takes the one a failed earlier attempt left) with
// group gid, writable by that group only; setgid, so what the pod creates
// inside keeps the group.
func (p *hostDir) makeDir(dir string, gid int) error {
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create the volume's directory: %w", err)
	}
	if p.privileged {
		if err := os.Lchown(dir, -1, gid); err != nil {
			return fmt.Errorf("give the volume's directory group %d: %w", gid, err)
		}
	}
	if err := os.Chmod(dir, 0o770|fs.ModeSetgid); err != nil {
		return fmt.Errorf("set the mode of the volume's directory: %w", err)
	}
	return nil
}

// Delete removes the directory of a volume whose claim is gone and whose
// reclaim policy is Delete (the library calls it for nothing else); the
// library then deletes the PersistentVolume.
func (p *hostDir) Delete(ctx context.Context, pv *v1.PersistentVolume) error {
	if pv.Spec.HostPath == nil || filepath.Dir(pv.Spec.HostPath.Path) != p.root {
		return fmt.Errorf("not deleting PersistentVolume %s: its hostPath is not a directory of %s", pv.Name, p.root)
	}
	if err := os.RemoveAll(pv.Spec.HostPath.Path); err != nil {
		return fmt.Errorf("remove the volume's directory: %w", err)
	}
	p.release(ctx, pv)
	return nil
}

// release gives pv's group back to the allocator. The table lives in this
// process only (it is rebuilt from the PersistentVolumes at start), so a
// failure costs one number of a large range, never a volume.
func (p *hostDir) release(ctx context.Context, pv *v1.PersistentVolume) {
	if !p.privileged {
		return
	}
	if err := p.gids.Release(klog.FromContext(ctx), pv); err != nil {
		klog.FromContext(ctx).Error(err, "Could not release the volume's group", "PV", pv.Name)
	}
}

func ptr[T any](v T) *T { return &v }

func main() {
	klog.InitFlags(nil)
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of the cluster (required)")
	root := flag.String("root", "", "absolute path of the folder that holds one directory per volume (created if missing; required)")
	name := flag.String("name", "multivac.local/hostpath", "provisioner name, as StorageClasses give it in .provisioner")
	qps := flag.Float64("kube-api-qps", 100, "requests per second to the API server (PVs, events)")
	burst := flag.Int("kube-api-burst", 200, "burst of requests to the API server")
	threads := flag.Int("threads", 4, "claims and volumes handled at once")
	flag.Parse()
	logger := klog.Background()
	fail := func(msg string, err error) {
		logger.Error(err, msg)
		klog.FlushAndExit(klog.ExitFlushTimeout, 1)
	}
	if *kubeconfig == "" || !filepath.IsAbs(*root) {
		fail("usage", errors.New("-kubeconfig and an absolute -root are required"))
	}
	if err := os.MkdirAll(*root, 0o700); err != nil {
		fail("Cannot create the volume folder", err)
	}
	config, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		fail("Cannot read the kubeconfig", err)
	}
	config.QPS, config.Burst = float32(*qps), *burst
	config.UserAgent = "multivac-provisioner"
	client, err := kubernetes.NewForConfig(config)
	if err != nil {
		fail("Cannot create a client", err)
	}

	ctx, stop := signal.NotifyContext(klog.NewContext(context.Background(), logger), syscall.SIGTERM, os.Interrupt)
	defer stop()
	p := &hostDir{root: filepath.Clean(*root), gids: gidallocator.New(client), privileged: os.Geteuid() == 0}
	// One provisioner per cluster: no leader election (and so no Lease).
	controller.NewProvisionController(ctx, client, *name, p,
		controller.LeaderElection(false),
		controller.Threadiness(*threads),
	).Run(ctx)
	klog.Flush()
}
