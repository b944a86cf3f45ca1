"""grok_devcluster: a real local Kubernetes control plane (etcd, kube-apiserver, controller-manager,
scheduler, kwok GPU nodes) started as plain processes on loopback, for tests, the demo and users.
"""
